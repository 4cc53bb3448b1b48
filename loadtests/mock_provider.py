"""Standalone OpenAI- and Anthropic-compatible mock LLM provider (aiohttp + uvloop).

Used by the test-suite over real HTTP (through :class:`MockProvider`, which runs the server on its
own thread and event loop) and by benchmarks (``python -m loadtests.mock_provider``).

Endpoints (also served without the ``/v1`` prefix):

* ``POST /v1/chat/completions``  OpenAI chat, stream and non-stream, tools, ``stream_options``
* ``POST /v1/embeddings``        OpenAI embeddings (``dimensions``, ``encoding_format=base64``)
* ``GET  /v1/models``            OpenAI model list (Anthropic format if ``anthropic-version`` is sent)
* ``POST /v1/messages``          Anthropic Messages, stream (SSE with ``event:`` lines) and non-stream
* ``POST /v1/messages/count_tokens``
* ``GET  /_mock/requests``       JSON list of the requests received (newest last)
* ``GET  /_mock/stats``          counters (requests, active/completed streams, client disconnects...)
* ``GET|POST /_mock/config``     read / merge runtime behaviour config
* ``POST /_mock/reset``          clear the request log, counters and runtime config

Behaviour knobs (``KNOB_DEFAULTS``) come, lowest precedence first, from the CLI / constructor
defaults, ``POST /_mock/config {"default": {...}}``, upstream model-name conventions
(``-fail500``, ``-fail429``, ``-hang``, ``-reset``, ``-slow``) and
``POST /_mock/config {"models": {"<model>": {...}}}``.

No authentication is required; the ``Authorization`` / ``x-api-key`` header is recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import random
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.providers import mock_engine as engine

try:  # pragma: no cover - depends on the environment
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

__all__ = ["KNOB_DEFAULTS", "MockProvider", "build_app", "main"]

KNOB_DEFAULTS: dict[str, Any] = {
    "latency_ms": 0,  # delay before the first byte of the response
    "chunks": 20,  # streamed content chunks
    "chunk_delay_ms": 0,  # delay between streamed chunks
    "status": None,  # force this HTTP error status (with an error envelope body)
    "fail_times": None,  # answer `status` (default 500) only for the first N requests per model
    "hang": False,  # never answer; sleep until the client goes away
    "reset_after_chunks": None,  # abort the TCP connection after N content chunks (0 = before any byte)
    "omit_usage": False,  # never send usage (the gateway must estimate)
    "error_rate": 0.0,  # probability of a random 500 (seeded RNG)
    "retry_after": 1,  # Retry-After header value sent with 429s
}

# Upstream model-name conventions, applied over the defaults (before per-model runtime config).
NAME_CONVENTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("-fail500", {"status": 500}),
    ("-fail429", {"status": 429}),
    ("-hang", {"hang": True}),
    ("-reset", {"reset_after_chunks": 3}),
)
SLOW_SUFFIX = "-slow"
SLOW_EXTRA_MS = 2000

_JSON_HEADERS = {"Content-Type": "application/json"}
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
STATE_KEY: web.AppKey[_State] = web.AppKey("mock_state")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=_dumps(obj), status=status, headers={**_JSON_HEADERS, **headers} if headers else _JSON_HEADERS
    )


class ConfigError(ValueError):
    pass


def _validate_knobs(knobs: Any, where: str) -> dict[str, Any]:
    if knobs is None:
        return {}
    if not isinstance(knobs, dict):
        raise ConfigError(f"{where} must be an object")
    unknown = sorted(set(knobs) - set(KNOB_DEFAULTS))
    if unknown:
        raise ConfigError(f"{where}: unknown knob(s) {unknown}; known: {sorted(KNOB_DEFAULTS)}")
    return dict(knobs)


class _State:
    """All mutable server state. Only touched from the server's event loop thread."""

    def __init__(self, defaults: dict[str, Any] | None = None, *, seed: int = 0, log_limit: int = 10000):
        self.base_defaults = {**KNOB_DEFAULTS, **_validate_knobs(defaults, "defaults")}
        self.seed = seed
        self.log_limit = log_limit
        self.release_hangs = asyncio.Event()  # set at shutdown: hung requests are then aborted
        self.reset()

    def reset(self) -> None:
        self.runtime_default: dict[str, Any] = {}
        self.runtime_models: dict[str, dict[str, Any]] = {}
        self._knob_cache: dict[str, dict[str, Any]] = {}
        self.fail_counts: Counter[str] = Counter()
        self.rng = random.Random(self.seed)
        self.log: deque[dict[str, Any]] = deque(maxlen=self.log_limit)
        self.seq = 0
        self.total_requests = 0
        self.active_streams = 0
        self.completed_streams = 0
        self.client_disconnects = 0
        self.resets = 0
        self.hanging = 0
        self.injected_errors = 0
        self.models: Counter[str] = Counter()
        self.paths: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()

    # -- config -------------------------------------------------------------------------------

    def configure(self, default: dict | None = None, models: dict | None = None) -> None:
        default = _validate_knobs(default, "default")
        if models is not None and not isinstance(models, dict):
            raise ConfigError("models must be an object mapping model name -> knobs")
        checked = {str(name): _validate_knobs(k, f"models[{name!r}]") for name, k in (models or {}).items()}
        if default:
            self.runtime_default.update(default)
            self.fail_counts.clear()
        for name, knobs in checked.items():
            self.runtime_models.setdefault(name, {}).update(knobs)
            self.fail_counts.pop(name, None)
        self._knob_cache.clear()

    def knobs(self, model: str) -> dict[str, Any]:
        cached = self._knob_cache.get(model)
        if cached is not None:
            return cached
        knobs = {**self.base_defaults, **self.runtime_default}
        for marker, overrides in NAME_CONVENTIONS:
            if marker in model:
                knobs.update(overrides)
        if SLOW_SUFFIX in model:
            knobs["latency_ms"] = (knobs["latency_ms"] or 0) + SLOW_EXTRA_MS
        knobs.update(self.runtime_models.get(model, {}))
        if len(self._knob_cache) > 10000:  # many distinct model names: keep the cache bounded
            self._knob_cache.clear()
        self._knob_cache[model] = knobs
        return knobs

    def config_snapshot(self) -> dict[str, Any]:
        return {
            "defaults": dict(self.base_defaults),
            "default": dict(self.runtime_default),
            "models": {k: dict(v) for k, v in self.runtime_models.items()},
        }

    # -- bookkeeping ----------------------------------------------------------------------------

    def record(self, request: web.Request, body: Any, model: str | None) -> dict[str, Any]:
        self.seq += 1
        self.total_requests += 1
        self.paths[request.path] += 1
        if model is not None:
            self.models[model] += 1
        headers = {k.lower(): v for k, v in request.headers.items()}
        entry = {
            "id": self.seq,
            "time": time.time(),
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "headers": headers,
            "auth": headers.get("authorization") or headers.get("x-api-key"),
            "body": body,
            "model": model,
            "stream": bool(isinstance(body, dict) and body.get("stream")),
            "status": None,
        }
        self.log.append(entry)
        return entry

    def stats(self) -> dict[str, Any]:
        return {
            "total_requests": self.total_requests,
            "active_streams": self.active_streams,
            "completed_streams": self.completed_streams,
            "client_disconnects": self.client_disconnects,
            "resets": self.resets,
            "hanging": self.hanging,
            "injected_errors": self.injected_errors,
            "models": dict(self.models),
            "paths": dict(self.paths),
            "statuses": {str(k): v for k, v in self.statuses.items()},
        }

    def model_names(self) -> list[str]:
        names = list(engine.DEFAULT_MODELS)
        names.extend(n for n in self.runtime_models if n not in names)
        return names


class _Handlers:
    def __init__(self, state: _State):
        self.state = state

    # -- helpers --------------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _error(self, flavor: str, status: int, message: str | None, knobs: dict | None = None) -> web.Response:
        body = (
            engine.anthropic_error(status, message) if flavor == "anthropic" else engine.openai_error(status, message)
        )
        headers = None
        if status == 429:
            headers = {"Retry-After": str((knobs or KNOB_DEFAULTS).get("retry_after", 1))}
        return _json(body, status=status, headers=headers)

    def _finish(self, entry: dict[str, Any], resp: web.StreamResponse) -> web.StreamResponse:
        entry["status"] = resp.status
        self.state.statuses[resp.status] += 1
        return resp

    async def _before_first_byte(
        self, request: web.Request, entry: dict, knobs: dict, model: str, flavor: str
    ) -> web.StreamResponse | None:
        """Apply hang / latency / error knobs. Returns a response to send instead, or None."""
        state = self.state
        if knobs["hang"]:
            # Until the client goes away (aiohttp cancels the handler) or the server shuts down.
            state.hanging += 1
            try:
                await state.release_hangs.wait()
            finally:
                state.hanging -= 1
            self._abort(request, count=False)
            return web.Response()
        latency = knobs["latency_ms"]
        if latency:
            await asyncio.sleep(latency / 1000.0)
        status = knobs["status"]
        fail_times = knobs["fail_times"]
        if fail_times is not None:
            if state.fail_counts[model] < fail_times:
                state.fail_counts[model] += 1
                state.injected_errors += 1
                return self._error(flavor, int(status or 500), "Mock provider: injected failure", knobs)
        elif status and int(status) >= 400:
            state.injected_errors += 1
            return self._error(flavor, int(status), None, knobs)
        rate = knobs["error_rate"]
        if rate and state.rng.random() < rate:
            state.injected_errors += 1
            return self._error(flavor, 500, "Mock provider: random failure", knobs)
        return None

    def _abort(self, request: web.Request, *, count: bool = True) -> None:
        if count:
            self.state.resets += 1
        transport = request.transport
        if transport is not None:
            with contextlib.suppress(Exception):
                sock = transport.get_extra_info("socket")
                if sock is not None:  # RST instead of FIN: a real "connection reset by peer"
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()

    async def _stream(
        self, request: web.Request, entry: dict, frames: list[bytes], prelude: int, knobs: dict
    ) -> web.StreamResponse:
        state = self.state
        resp = web.StreamResponse(status=200, headers=_SSE_HEADERS)
        entry["status"] = 200
        state.statuses[200] += 1
        delay = (knobs["chunk_delay_ms"] or 0) / 1000.0
        reset_after = knobs["reset_after_chunks"]
        # Abort after N content chunks, and never send the terminating frame of a "reset" stream.
        abort_at = None if reset_after is None else min(prelude + int(reset_after), len(frames) - 1)
        state.active_streams += 1
        try:
            await resp.prepare(request)
            if delay <= 0 and abort_at is None:
                await resp.write(b"".join(frames))
            else:
                for i, frame in enumerate(frames):
                    if i == abort_at:
                        self._abort(request)
                        return resp
                    if delay > 0 and i > prelude:
                        await asyncio.sleep(delay)
                    await resp.write(frame)
            await resp.write_eof()
            state.completed_streams += 1
        except ConnectionError:  # the client went away mid-stream
            state.client_disconnects += 1
        except asyncio.CancelledError:  # ditto, noticed by aiohttp's handler cancellation
            state.client_disconnects += 1
            raise
        finally:
            state.active_streams -= 1
        return resp

    async def _model_request(self, request: web.Request, flavor: str, required: tuple[str, ...]) -> Any:
        """Common prologue: parse, validate, record. Returns (entry, body, model) or a Response."""
        body = await self._body(request)
        model = body.get("model") if isinstance(body, dict) else None
        entry = self.state.record(request, body, model if isinstance(model, str) else None)
        if not isinstance(body, dict):
            return self._finish(entry, self._error(flavor, 400, "Request body must be a JSON object"))
        missing = [f for f in required if f not in body]
        if missing:
            return self._finish(entry, self._error(flavor, 400, f"Missing required field(s): {missing}"))
        if not isinstance(model, str) or not model:
            return self._finish(entry, self._error(flavor, 400, "'model' must be a non-empty string"))
        return entry, body, model

    # -- OpenAI ---------------------------------------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        res = await self._model_request(request, "openai", ("model", "messages"))
        if isinstance(res, web.StreamResponse):
            return res
        entry, body, model = res
        knobs = self.state.knobs(model)
        early = await self._before_first_byte(request, entry, knobs, model, "openai")
        if early is not None:
            return self._finish(entry, early)
        include_usage = not knobs["omit_usage"]
        if body.get("stream"):
            chunks = engine.chat_completion_chunks(
                body,
                chunks=knobs["chunks"],
                include_usage=include_usage and engine.stream_include_usage(body),
            )
            frames = [engine.sse_data(c) for c in chunks]
            frames.append(engine.SSE_DONE)
            return await self._stream(request, entry, frames, 1, knobs)
        if knobs["reset_after_chunks"] is not None:
            self._abort(request)
            return web.Response()
        return self._finish(entry, _json(engine.chat_completion(body, include_usage=include_usage)))

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        res = await self._model_request(request, "openai", ("model", "input"))
        if isinstance(res, web.StreamResponse):
            return res
        entry, body, model = res
        knobs = self.state.knobs(model)
        early = await self._before_first_byte(request, entry, knobs, model, "openai")
        if early is not None:
            return self._finish(entry, early)
        if knobs["reset_after_chunks"] is not None:
            self._abort(request)
            return web.Response()
        out = engine.embeddings_response(body)
        if knobs["omit_usage"]:
            out.pop("usage", None)
        return self._finish(entry, _json(out))

    async def models(self, request: web.Request) -> web.StreamResponse:
        entry = self.state.record(request, None, None)
        names = self.state.model_names()
        if "anthropic-version" in request.headers:
            return self._finish(entry, _json(engine.anthropic_models_list(names)))
        return self._finish(entry, _json(engine.models_list(names)))

    # -- Anthropic ------------------------------------------------------------------------------

    async def messages(self, request: web.Request) -> web.StreamResponse:
        res = await self._model_request(request, "anthropic", ("model", "messages", "max_tokens"))
        if isinstance(res, web.StreamResponse):
            return res
        entry, body, model = res
        knobs = self.state.knobs(model)
        early = await self._before_first_byte(request, entry, knobs, model, "anthropic")
        if early is not None:
            return self._finish(entry, early)
        include_usage = not knobs["omit_usage"]
        if body.get("stream"):
            events = engine.anthropic_stream_events(body, chunks=knobs["chunks"], include_usage=include_usage)
            frames = [engine.sse_event(name, data) for name, data in events]
            return await self._stream(request, entry, frames, 3, knobs)
        if knobs["reset_after_chunks"] is not None:
            self._abort(request)
            return web.Response()
        return self._finish(entry, _json(engine.anthropic_message(body, include_usage=include_usage)))

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        res = await self._model_request(request, "anthropic", ("model", "messages"))
        if isinstance(res, web.StreamResponse):
            return res
        entry, body, _model = res
        return self._finish(entry, _json(engine.anthropic_count_tokens(body)))

    # -- control endpoints --------------------------------------------------------------------

    async def get_requests(self, request: web.Request) -> web.Response:
        return _json(list(self.state.log))

    async def get_stats(self, request: web.Request) -> web.Response:
        return _json(self.state.stats())

    async def get_config(self, request: web.Request) -> web.Response:
        return _json(self.state.config_snapshot())

    async def post_config(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, dict) or set(body) - {"default", "models"}:
            return _json({"error": 'expected {"default": {...}, "models": {"<model>": {...}}}'}, status=400)
        try:
            self.state.configure(body.get("default"), body.get("models"))
        except ConfigError as exc:
            return _json({"error": str(exc)}, status=400)
        return _json(self.state.config_snapshot())

    async def post_reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        return _json({"ok": True})


def build_app(state: _State) -> web.Application:
    """The aiohttp application serving ``state``."""
    h = _Handlers(state)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE_KEY] = state
    for prefix in ("/v1", ""):
        app.router.add_post(prefix + "/chat/completions", h.chat_completions)
        app.router.add_post(prefix + "/embeddings", h.embeddings)
        app.router.add_get(prefix + "/models", h.models)
        app.router.add_post(prefix + "/messages", h.messages)
        app.router.add_post(prefix + "/messages/count_tokens", h.count_tokens)
    app.router.add_get("/_mock/requests", h.get_requests)
    app.router.add_get("/_mock/stats", h.get_stats)
    app.router.add_get("/_mock/config", h.get_config)
    app.router.add_post("/_mock/config", h.post_config)
    app.router.add_post("/_mock/reset", h.post_reset)
    return app


def _new_loop() -> asyncio.AbstractEventLoop:
    return uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()


def _make_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


async def _start_runner(state: _State, sock: socket.socket, shutdown_timeout: float) -> web.AppRunner:
    runner = web.AppRunner(
        build_app(state), access_log=None, handler_cancellation=True, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    await web.SockSite(runner, sock, backlog=2048).start()
    return runner


# --------------------------------------------------------------------------------------------
# Python API for tests
# --------------------------------------------------------------------------------------------


class MockProvider:
    """Run the mock provider on a background thread with its own event loop.

    >>> with MockProvider() as mock:
    ...     client = openai.OpenAI(base_url=mock.url + "/v1", api_key="x")
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency_ms: float = 0,
        chunks: int = 20,
        chunk_delay_ms: float = 0,
        error_rate: float = 0.0,
        seed: int = 0,
        log_limit: int = 10000,
    ):
        self.host = host
        self.port = port
        defaults = {
            "latency_ms": latency_ms,
            "chunks": chunks,
            "chunk_delay_ms": chunk_delay_ms,
            "error_rate": error_rate,
        }
        self._state = _State(defaults, seed=seed, log_limit=log_limit)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> MockProvider:
        if self._thread is not None:
            raise RuntimeError("MockProvider already started")
        sock = _make_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, args=(sock,), name="mock-provider", daemon=True)
        self._thread.start()
        self._started.wait(10)
        if self._start_error is not None:
            raise RuntimeError("mock provider failed to start") from self._start_error
        return self

    def _run(self, sock: socket.socket) -> None:
        loop = _new_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            self._runner = loop.run_until_complete(_start_runner(self._state, sock, shutdown_timeout=0.5))
        except BaseException as exc:
            self._start_error = exc
            sock.close()
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            self._state.release_hangs.set()
            with contextlib.suppress(Exception):
                loop.run_until_complete(self._runner.cleanup())
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> MockProvider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- state access (executed on the server loop, results are JSON round-tripped copies) --------

    def _call(self, fn: Callable[[], Any]) -> Any:
        if self._loop is None or self._thread is None:
            return json.loads(_dumps(fn()))
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(json.loads(_dumps(fn())))
            except BaseException as exc:
                fut.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return fut.result(timeout=10)

    def requests(self) -> list[dict[str, Any]]:
        """Requests received so far (same as ``GET /_mock/requests``)."""
        return self._call(lambda: list(self._state.log))

    def stats(self) -> dict[str, Any]:
        """Counters (same as ``GET /_mock/stats``)."""
        return self._call(self._state.stats)

    def configure(self, default: dict | None = None, models: dict | None = None) -> dict[str, Any]:
        """Merge runtime knobs (same as ``POST /_mock/config``); raises ValueError on unknown knobs."""
        return self._call(lambda: (self._state.configure(default, models), self._state.config_snapshot())[1])

    def reset(self) -> None:
        """Clear the request log, counters and runtime config (same as ``POST /_mock/reset``)."""
        self._call(self._state.reset)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        """Poll :meth:`stats` until ``predicate(stats)`` is true; returns the stats (raises on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if predicate(stats):
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"mock provider stats never matched: {stats}")
            time.sleep(0.01)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _serve(sock: socket.socket, defaults: dict[str, Any], seed: int, log_limit: int, ready: Any = None) -> None:
    """Serve on ``sock`` in the current thread until SIGINT/SIGTERM."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    state = _State(defaults, seed=seed, log_limit=log_limit)

    async def run() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runner = await _start_runner(state, sock, shutdown_timeout=2.0)
        if ready is not None:
            ready.set()
        try:
            await stop.wait()
        finally:
            state.release_hangs.set()
            await runner.cleanup()

    try:
        loop.run_until_complete(run())
    finally:
        loop.close()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtests.mock_provider", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=18000, help="port (0 = any free port)")
    p.add_argument("--workers", type=int, default=1, help="processes sharing the port via SO_REUSEPORT")
    p.add_argument("--latency-ms", type=float, default=0, help="delay before the first byte")
    p.add_argument("--chunks", type=int, default=20, help="streamed content chunks per answer")
    p.add_argument("--chunk-delay-ms", type=float, default=0, help="delay between streamed chunks")
    p.add_argument("--error-rate", type=float, default=0.0, help="probability of a random 500")
    p.add_argument("--seed", type=int, default=0, help="seed of the error RNG")
    p.add_argument("--log-limit", type=int, default=10000, help="requests kept for /_mock/requests")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    defaults = {
        "latency_ms": args.latency_ms,
        "chunks": args.chunks,
        "chunk_delay_ms": args.chunk_delay_ms,
        "error_rate": args.error_rate,
    }
    workers = max(1, args.workers)
    if workers == 1:
        sock = _make_socket(args.host, args.port)
        host, port = sock.getsockname()[:2]
        print(f"mock provider listening on http://{host}:{port}", flush=True)
        _serve(sock, defaults, args.seed, args.log_limit)
        return 0

    # Multi-process: every worker binds its own SO_REUSEPORT socket; the kernel balances
    # connections. State (/_mock/requests, /_mock/stats, /_mock/config) is per process.
    placeholder = _make_socket(args.host, args.port, reuse_port=True)  # reserves the port
    host, port = placeholder.getsockname()[:2]
    ctx = multiprocessing.get_context("fork")
    procs = []
    readies = []
    for _ in range(workers):
        ready = ctx.Event()
        proc = ctx.Process(target=_worker, args=(host, port, defaults, args.seed, args.log_limit, ready))
        proc.start()
        procs.append(proc)
        readies.append(ready)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    for ready in readies:
        ready.wait(10)
    placeholder.close()
    print(f"mock provider listening on http://{host}:{port}", flush=True)
    while not stopping.is_set() and all(p.is_alive() for p in procs):
        stopping.wait(0.2)
    for proc in procs:
        if proc.is_alive() and proc.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
    for proc in procs:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    return 0


def _worker(host: str, port: int, defaults: dict[str, Any], seed: int, log_limit: int, ready: Any) -> None:
    sock = _make_socket(host, port, reuse_port=True)
    _serve(sock, defaults, seed, log_limit, ready)


if __name__ == "__main__":
    sys.exit(main())
