"""Sentinel's server: daphne, uvicorn or granian, with the same graceful shutdown under each.

    python -m sentinel_site.serve [--host H] [--port P] [--workers N] [--proxy-headers] [--server S]

``HOST``, ``PORT``, ``WEB_CONCURRENCY`` (worker processes) and ``SENTINEL_SERVER`` (``daphne``,
``uvicorn`` or ``granian``) are the defaults of the options. ``make serve``, the image and docker
compose use granian, the cheapest per request in the benchmark (README, "Performance").

``--server granian`` serves the same ASGI application (HTTP and Channels websockets) with granian
(Rust HTTP, uvloop) and granian's own worker processes (restarted when they die). Granian stops
accepting and lets open connections finish; :class:`GranianWorker` adds the readiness step before
it, the grace period (requests still running then are cancelled and recorded as cut off) and
steps 4-6 after it (the ASGI lifespan shutdown). The second signal is passed on to the workers.

``--server uvicorn`` serves the same ASGI application (HTTP and Channels websockets) with uvicorn
on uvloop and httptools, which costs less CPU per request than daphne's Twisted stack (README,
"Performance"). Its shutdown is uvicorn's own (stop accepting, close idle connections, let busy
ones finish up to ``SENTINEL_SHUTDOWN_GRACE``, websockets get 1012) with the same readiness step
before it and the same steps 4-6 after it (run as the ASGI lifespan shutdown).

Daphne implements neither the ASGI lifespan protocol nor a drain: its SIGTERM stops the reactor and
cancels every request at once, so open streams are cut and their usage is recorded as client
disconnects. This runner starts daphne's ``Server`` itself, with its own SIGTERM/SIGINT handling
on the Twisted reactor's event loop:

1. readiness turns false (``/health/ready`` answers 503); with ``--readiness-delay`` the server
   keeps accepting for that long, so a load balancer sees it before connections are refused;
2. the listening socket closes (new connections are refused), idle keep-alive connections close,
   busy ones close after their response, websockets get close code 1001 (htmx reconnects);
3. in-flight requests and streams run to completion, up to ``SENTINEL_SHUTDOWN_GRACE`` seconds;
   those still running then are cancelled (their usage is recorded as cut off);
4. the gateway's background finishers (usage and reservation settlement of ended streams) complete;
5. the usage spool is flushed to the ledger (``billing.services.usage_spool_drain``);
6. the reactor stops and the process exits 0.

A second signal skips the wait in step 3. Give the orchestrator's kill timeout at least
``readiness delay + SENTINEL_SHUTDOWN_GRACE + 15`` seconds (docker-compose: ``stop_grace_period``).

``--workers N`` (N > 1): this process binds the socket, starts N worker processes that accept on
it, restarts a worker that dies (one that dies within 10 s of its start stops the server: it
would only crash again), and forwards SIGTERM/SIGINT to all of them. Metrics of all workers
are aggregated through ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary directory when unset); a
single process uses it only when it is set. Either way the directory is emptied at start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import logging.config
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

log = logging.getLogger("sentinel.serve")
access_log = logging.getLogger("sentinel.access")

CANCEL_WAIT_SECONDS = 2.0  # for requests cancelled at the end of the grace period to unwind
FINISHERS_SECONDS = 5.0  # for stream finishers (settle + usage hand-off) to complete
FLUSH_SECONDS = 5.0  # for the usage spool flush
QUIET_PATHS = ("/health/", "/metrics")  # successful probes and scrapes are not access-logged
CRASH_LOOP_SECONDS = 10.0  # a worker that dies sooner after its start is not restarted
SERVERS = ("daphne", "uvicorn", "granian")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sentinel_site.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=os.environ.get("HOST") or "127.0.0.1", help="default: $HOST or 127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000), help="default: $PORT or 8000")
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WEB_CONCURRENCY") or 1),
        help="worker processes (default: $WEB_CONCURRENCY or 1)",
    )
    parser.add_argument(
        "--proxy-headers",
        action="store_true",
        help="take the client address and scheme from X-Forwarded-For/-Port/-Proto (only behind a proxy)",
    )
    parser.add_argument(
        "--readiness-delay",
        type=float,
        default=0.0,
        help="seconds to keep accepting after readiness turns false (default 0)",
    )
    parser.add_argument("--no-access-log", dest="access_log", action="store_false", help="no per-request log line")
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default=os.environ.get("SENTINEL_SERVER") or "daphne",
        help="ASGI server (default: $SENTINEL_SERVER or daphne)",
    )
    parser.add_argument("--fd", type=int, default=None, help=argparse.SUPPRESS)  # a worker of --workers
    args = parser.parse_args(argv)
    if args.server not in SERVERS:
        parser.error(f"--server must be one of {', '.join(SERVERS)}")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    return args


# --------------------------------------------------------------------------- metrics directory
def prepare_multiproc_dir(path: str) -> None:
    """Create the directory and remove the previous run's files (their pids are gone)."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


def mark_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


# --------------------------------------------------------------------------- access log
class AccessLogMiddleware:
    """One structured line per HTTP request, when its response has been sent (a stream: at its
    end). The request id is the one the API middleware put in ``x-request-id``; the path is logged
    without its query string."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from sentinel_site.logging import request_context

        started = time.perf_counter()
        state = {"status": 0, "bytes": 0, "request_id": "", "done": False}
        # A dict the request's code may fill (tenant, key); the JSON formatter adds its items.
        token = request_context.set({})

        async def send_and_watch(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                for name, value in message.get("headers") or ():
                    if name.lower() == b"x-request-id":
                        state["request_id"] = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body") or b"")
                if not message.get("more_body"):
                    state["done"] = True
            await send(message)

        failed = False
        try:
            await self.app(scope, receive, send_and_watch)
        except asyncio.CancelledError:
            raise
        except BaseException:
            failed = True
            raise
        finally:
            if state["done"]:
                status = state["status"]
            else:  # the app failed before answering, or the client left (or was cut off) first
                status = 500 if failed and not state["status"] else 499
            path = scope.get("path", "")
            if status >= 400 or not path.startswith(QUIET_PATHS):
                client = scope.get("client") or ("", 0)
                duration_ms = round((time.perf_counter() - started) * 1000, 1)
                extra = {
                    "method": scope.get("method", ""),
                    "path": path,
                    "status": status,
                    "duration_ms": duration_ms,
                    "bytes": state["bytes"],
                    "client": client[0],
                }
                if state["request_id"]:
                    extra["request_id"] = state["request_id"]
                access_log.info("%s %s %s %sms", extra["method"], path, status, duration_ms, extra=extra)
            request_context.reset(token)


# --------------------------------------------------------------------------- one server process
def run_server(args: argparse.Namespace) -> int:
    # daphne.server installs the asyncio Twisted reactor: it must come before anything imports one.
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server
    from django.conf import settings
    from twisted.internet import reactor

    from sentinel_site.asgi import application

    class GracefulServer(Server):
        def __init__(self, *server_args, **server_kwargs) -> None:
            super().__init__(*server_args, signal_handlers=False, **server_kwargs)
            self.ports: list = []
            self.channels: weakref.WeakSet = weakref.WeakSet()
            self.shutdown_task: asyncio.Task | None = None
            self.hurry = asyncio.Event()

        # -- bookkeeping
        def listen_success(self, port) -> None:
            self.ports.append(port)
            super().listen_success(port)

        def protocol_connected(self, protocol) -> None:
            super().protocol_connected(protocol)
            channel = getattr(protocol, "channel", None)
            if channel is not None:
                self.channels.add(channel)

        def kill_all_applications(self):
            # daphne's own version fails on a connection that never got an application instance.
            from twisted.internet import defer

            pending = [
                details["application_instance"]
                for details in self.connections.values()
                if details.get("application_instance") is not None and not details["application_instance"].done()
            ]
            for instance in pending:
                instance.cancel()
            if pending:
                log.warning("shutdown: cancelled %d application instances at exit", len(pending))
            return defer.Deferred.fromFuture(asyncio.gather(*pending, return_exceptions=True))

        def busy(self) -> list:
            """HTTP requests not finished: being received, answered, or streaming."""
            from daphne.http_protocol import WebRequest

            busy = []
            for protocol, details in list(self.connections.items()):
                if not isinstance(protocol, WebRequest):
                    continue
                instance = details.get("application_instance")
                if "disconnected" not in details or (instance is not None and not instance.done()):
                    busy.append((protocol, instance))
            return busy

        # -- shutdown
        def on_signal(self, signum: int) -> None:
            name = signal.Signals(signum).name
            if self.shutdown_task is None:
                self.shutdown_task = asyncio.ensure_future(self.shutdown(name))
            else:
                log.warning("shutdown: second %s, not waiting for in-flight requests any longer", name)
                self.hurry.set()

        async def pause(self, seconds: float) -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.hurry.wait(), timeout=seconds)

        def stop_accepting(self) -> None:
            from daphne.ws_protocol import WebSocketProtocol

            for port in self.ports:
                port.stopListening()
            for channel in list(self.channels):
                if channel.transport is None:
                    continue
                if channel.requests:
                    channel.persistent = False  # close once the current response is sent
                else:
                    channel.transport.loseConnection()
            for protocol in list(self.connections):
                if isinstance(protocol, WebSocketProtocol):
                    protocol.serverClose(code=1001)  # going away: the console reconnects elsewhere

        async def shutdown(self, signal_name: str) -> None:
            from sentinel_site import health

            try:
                health.shutting_down.set()
                log.info("shutdown: %s received, readiness is false", signal_name)
                if args.readiness_delay > 0:
                    await self.pause(args.readiness_delay)
                self.stop_accepting()
                await self.wait_for_requests(settings.SENTINEL_SHUTDOWN_GRACE)
            except Exception:
                log.exception("shutdown: waiting for in-flight requests failed")
            await finish_background_work()
            reactor.stop()

        async def wait_for_requests(self, grace: float) -> None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace
            log.info("shutdown: not accepting; waiting up to %.0fs for %d requests", grace, len(self.busy()))
            while self.busy() and loop.time() < deadline and not self.hurry.is_set():
                await self.pause(0.05)
            left = [instance for _, instance in self.busy() if instance is not None and not instance.done()]
            if left:
                log.warning("shutdown: grace period over, cancelling %d requests", len(left))
                for instance in left:
                    instance.cancel()
                await asyncio.wait(left, timeout=CANCEL_WAIT_SECONDS)

    if args.fd is not None:
        endpoints = build_endpoint_description_strings(file_descriptor=args.fd)
    else:
        endpoints = build_endpoint_description_strings(host=args.host, port=args.port)
    server = GracefulServer(
        application=AccessLogMiddleware(application) if args.access_log else application,
        endpoints=endpoints,
        proxy_forwarded_address_header="X-Forwarded-For" if args.proxy_headers else None,
        proxy_forwarded_port_header="X-Forwarded-Port" if args.proxy_headers else None,
        proxy_forwarded_proto_header="X-Forwarded-Proto" if args.proxy_headers else None,
        application_close_timeout=10,
        server_name="sentinel",
    )
    loop = reactor._asyncioEventloop
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.on_signal, signum)
    log.info("sentinel %s serving on %s (pid %d)", settings.SENTINEL_ENV, ", ".join(endpoints), os.getpid())
    server.run()
    mark_dead(os.getpid())
    return 1 if server.abort_start else 0


async def finish_background_work() -> None:
    """Steps 4-6 of the shutdown, once no request runs any more. Each step runs even if the one
    before failed: the usage of served requests comes first."""
    try:
        from gateway.pipeline import drain_background

        await drain_background(FINISHERS_SECONDS)
    except Exception:
        log.exception("shutdown: stream finishers failed")
    try:
        from gateway.limits import replay_pending_settlements

        left = await asyncio.wait_for(replay_pending_settlements(), FLUSH_SECONDS)
        if left:
            log.warning("shutdown: %d budget settlements could not reach Redis; reconcile frees them", left)
    except Exception:
        log.exception("shutdown: replaying budget settlements failed")
    await asyncio.get_running_loop().run_in_executor(None, flush_usage_spool)
    log.info("shutdown: done")


# --------------------------------------------------------------------------- uvicorn
def run_uvicorn(args: argparse.Namespace) -> int:
    import uvicorn
    from django.conf import settings

    from sentinel_site import health
    from sentinel_site.asgi import application

    app = AccessLogMiddleware(application) if args.access_log else application

    async def app_with_lifespan(scope, receive, send):
        # Channels' router has no lifespan; uvicorn sends shutdown once the connections are done.
        if scope["type"] != "lifespan":
            return await app(scope, receive, send)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await finish_background_work()
                await send({"type": "lifespan.shutdown.complete"})
                return

    class GracefulUvicorn(uvicorn.Server):
        exit_at: float | None = None

        def handle_exit(self, sig, frame) -> None:
            name = signal.Signals(sig).name
            if self.exit_at is None:
                health.shutting_down.set()
                log.info("shutdown: %s received, readiness is false", name)
                self.exit_at = time.monotonic() + max(args.readiness_delay, 0.0)
                return
            log.warning("shutdown: second %s, not waiting for in-flight requests any longer", name)
            self.should_exit = True
            for task in list(self.server_state.tasks):
                task.cancel()

        async def on_tick(self, counter: int) -> bool:
            if self.exit_at is not None and time.monotonic() >= self.exit_at:
                self.should_exit = True
            return await super().on_tick(counter)

        async def shutdown(self, sockets=None) -> None:
            await super().shutdown(sockets=sockets)
            self._captured_signals.clear()  # handled: do not re-raise them at exit (exit code 0)

    config = uvicorn.Config(
        app_with_lifespan,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,  # AccessLogMiddleware writes Sentinel's own line
        log_config=None,  # Django's LOGGING (JSON in production) applies
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips="*" if args.proxy_headers else None,
        timeout_graceful_shutdown=int(settings.SENTINEL_SHUTDOWN_GRACE),
        server_header=False,
    )
    server = GracefulUvicorn(config)
    sockets = [socket.socket(fileno=args.fd)] if args.fd is not None else None
    where = f"fd {args.fd}" if args.fd is not None else f"{args.host}:{args.port}"
    log.info("sentinel %s serving with uvicorn on %s (pid %d)", settings.SENTINEL_ENV, where, os.getpid())
    server.run(sockets=sockets)
    mark_dead(os.getpid())
    return 0 if server.started else 1


# --------------------------------------------------------------------------- granian
class GranianWorker:
    """One granian worker's side of the shutdown (granian's own stops accepting and lets open
    connections finish, but knows no readiness delay, grace period or usage flush).

    Installed as the worker's SIGTERM/SIGINT handler in place of granian's (``granian_app``), it
    turns readiness false, keeps accepting for the readiness delay, then tells granian to stop
    accepting; the ASGI lifespan shutdown that follows waits for the HTTP requests still running
    (up to ``SENTINEL_SHUTDOWN_GRACE``, cancelling the rest), closes websockets, and runs steps 4-6.
    """

    def __init__(self, app, *, readiness_delay: float) -> None:
        self.app = app
        self.readiness_delay = readiness_delay
        self.requests: set[asyncio.Task] = set()
        self.websockets: set[asyncio.Task] = set()
        self.signalled_at: float | None = None
        self.stop_granian = None  # granian's WorkerSignal

    def install(self, loop):
        """Stands in for ``granian._signals.set_loop_signals`` in this worker."""
        from granian._granian import WorkerSignal

        self.stop_granian = WorkerSignal()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.on_signal, signum)
        return self.stop_granian

    def on_signal(self, signum: int) -> None:
        from django.conf import settings

        from sentinel_site import health

        name = signal.Signals(signum).name
        if self.signalled_at is not None:
            log.warning("shutdown: second %s, not waiting for in-flight requests any longer", name)
            self.stop_granian.set()
            self.cut()
            return
        self.signalled_at = time.monotonic()
        health.shutting_down.set()
        log.info("shutdown: %s received, readiness is false", name)
        loop = asyncio.get_running_loop()
        delay = max(self.readiness_delay, 0.0)
        loop.call_later(delay, self.stop_accepting, settings.SENTINEL_SHUTDOWN_GRACE)
        # granian waits for open connections before it hands back: the grace period is kept here.
        loop.call_later(delay + settings.SENTINEL_SHUTDOWN_GRACE, self.cut)

    def stop_accepting(self, grace: float) -> None:
        log.info("shutdown: not accepting; waiting up to %.0fs for %d requests", grace, len(self.requests))
        self.stop_granian.set()
        for task in list(self.websockets):
            task.cancel()  # the console's live view reconnects to another process

    def cut(self) -> None:
        left = [task for task in self.requests if not task.done()]
        if left:
            log.warning("shutdown: grace period over, cancelling %d requests", len(left))
        for task in left + list(self.websockets):
            task.cancel()

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind == "lifespan":
            return await self.lifespan(receive, send)
        tasks = self.requests if kind == "http" else self.websockets
        task = asyncio.current_task()
        tasks.add(task)
        try:
            return await self.app(scope, receive, send)
        except asyncio.CancelledError:
            if self.signalled_at is None:
                raise
            return None  # cut off by the shutdown (recorded as such): not an application error
        finally:
            tasks.discard(task)

    async def lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.drain()
                await finish_background_work()
                mark_dead(os.getpid())
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def drain(self) -> None:
        """Normally nothing is left by now (granian waited for its connections; ``cut`` ended
        what outlived the grace period): whatever still runs is cancelled."""
        left = [task for task in self.requests | self.websockets if not task.done()]
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=CANCEL_WAIT_SECONDS)


def granian_app():
    """granian's factory target in each worker: the application behind :class:`GranianWorker`."""
    import granian._signals

    from sentinel_site.asgi import application

    inner = application
    if os.environ.get("SENTINEL_ACCESS_LOG", "1") == "1":
        inner = AccessLogMiddleware(inner)
    if os.environ.get("SENTINEL_PROXY_HEADERS") == "1":
        # granian has no proxy-header option: uvicorn's middleware gives the application (and the
        # access log) the same client address and scheme as --proxy-headers does under uvicorn.
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        inner = ProxyHeadersMiddleware(inner, trusted_hosts="*")
    worker = GranianWorker(inner, readiness_delay=float(os.environ.get("SENTINEL_READINESS_DELAY") or 0))
    granian._signals.set_loop_signals = worker.install  # read by granian when it starts serving
    return worker


def run_granian(args: argparse.Namespace) -> int:
    """granian's process manager (its workers, restarted when they die) on the same application."""
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.server import Server

    module = importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"])
    grace = float(getattr(module, "SENTINEL_SHUTDOWN_GRACE", 30))
    os.environ["SENTINEL_ACCESS_LOG"] = "1" if args.access_log else "0"
    os.environ["SENTINEL_READINESS_DELAY"] = str(args.readiness_delay)
    os.environ["SENTINEL_PROXY_HEADERS"] = "1" if args.proxy_headers else "0"

    class SentinelGranian(Server):
        signals = 0

        def signal_handler_interrupt(self, *signal_args, **kwargs):
            # granian stops its workers with one SIGTERM each; a second signal here is passed on,
            # so they stop waiting for in-flight requests.
            self.signals += 1
            if self.signals > 1:
                for worker in self.wrks:
                    with contextlib.suppress(Exception):
                        os.kill(worker.inner.pid, signal.SIGINT)
            return super().signal_handler_interrupt(*signal_args, **kwargs)

    server = SentinelGranian(
        "sentinel_site.serve:granian_app",
        factory=True,
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=args.workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=True,
        backlog=1024,
        log_dictconfig=module.LOGGING,
        log_access=False,  # AccessLogMiddleware writes Sentinel's own line
        respawn_failed_workers=True,
        # Past the readiness delay, the grace period and steps 4-6, a worker is killed.
        workers_kill_timeout=int(args.readiness_delay + grace + CANCEL_WAIT_SECONDS + 2 * FLUSH_SECONDS + 15),
        url_path_prefix=None,
    )
    log.info(
        "sentinel serving with granian on %s:%d, %d workers (pid %d)", args.host, args.port, args.workers, os.getpid()
    )
    server.serve()
    return 0


def flush_usage_spool() -> None:
    from django.db import connections

    from billing.services import usage_spool_drain

    try:
        result = usage_spool_drain(max_seconds=FLUSH_SECONDS)
        log.info("shutdown: %s", result.summary())
    except Exception:
        # Whatever is left stays in Redis for the Celery drain; nothing is lost by failing here.
        log.exception("shutdown: usage spool flush failed; the entries stay in the spool")
    finally:
        connections.close_all()


# --------------------------------------------------------------------------- several processes
def run_workers(args: argparse.Namespace) -> int:
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    if family == socket.AF_INET6:
        # daphne's fd endpoint adopts IPv4 sockets only.
        raise SystemExit("sentinel: --workers > 1 needs an IPv4 --host (e.g. 0.0.0.0)")
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))
    listener.listen(1024)
    listener.set_inheritable(True)
    fd = listener.fileno()

    command = [sys.executable, "-m", "sentinel_site.serve", "--fd", str(fd), "--server", args.server]
    command += ["--readiness-delay", str(args.readiness_delay)]
    command += ["--proxy-headers"] if args.proxy_headers else []
    command += [] if args.access_log else ["--no-access-log"]

    def spawn() -> subprocess.Popen:
        # Own session: a terminal's Ctrl-C reaches only this process, which forwards it once (a
        # second signal would make the workers stop waiting for in-flight requests).
        return subprocess.Popen(command, pass_fds=(fd,), start_new_session=True)

    workers = [spawn() for _ in range(args.workers)]
    born = {worker.pid: time.monotonic() for worker in workers}
    log.info("sentinel: %d workers on %s:%d (pids %s)", args.workers, args.host, args.port, [w.pid for w in workers])
    stopping: list[int] = []
    fatal = False

    def forward(signum, frame) -> None:
        if not stopping:
            listener.close()  # the workers close their copies: then connections are refused
        stopping.append(signum)
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes: dict[int, int] = {}
    while True:
        for i, worker in enumerate(workers):
            code = worker.poll()
            if code is None or worker.pid in codes:
                continue
            codes[worker.pid] = code
            mark_dead(worker.pid)
            if stopping:
                continue
            if time.monotonic() - born[worker.pid] < CRASH_LOOP_SECONDS:
                # It could not even start (configuration, database): restarting would only loop.
                log.critical("sentinel: worker %d exited with %s at start; stopping", worker.pid, code)
                fatal = True
                forward(signal.SIGTERM, None)
                continue
            log.error("sentinel: worker %d exited with %s; starting a new one", worker.pid, code)
            workers[i] = spawn()
            born[workers[i].pid] = time.monotonic()
        if stopping and all(worker.poll() is not None for worker in workers):
            break
        time.sleep(0.1)
    return 1 if fatal or any(worker.returncode != 0 for worker in workers) else 0


# --------------------------------------------------------------------------- entry point
def configure_logging() -> None:
    """The parent of --workers does not set Django up; it logs with the same configuration."""
    module = importlib.import_module(os.environ.get("DJANGO_SETTINGS_MODULE", "sentinel_site.settings"))
    logging.config.dictConfig(module.LOGGING)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sentinel_site.settings")
    serve = {"daphne": run_server, "uvicorn": run_uvicorn, "granian": run_granian}[args.server]
    if args.fd is not None:
        return serve(args)  # a worker: the parent prepared the metrics directory
    created = None
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        created = tempfile.mkdtemp(prefix="sentinel-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = created
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        prepare_multiproc_dir(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    try:
        if args.server == "granian":
            configure_logging()
            return run_granian(args)  # granian starts and restarts its worker processes itself
        if args.workers == 1:
            return serve(args)
        configure_logging()
        return run_workers(args)
    finally:
        if created:
            shutil.rmtree(created, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
