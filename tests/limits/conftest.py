import asyncio
import contextlib
import socket
import subprocess
import threading
import time
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
import redis
from asgiref.sync import async_to_sync
from django.conf import settings

from billing.services import usage_events_insert
from billing.usage import UsageRecord
from gateway import limits
from tenants.services import api_key_create


@pytest.fixture(autouse=True)
def _fresh_process_state(settings):
    # Exactness tests must not flip to the fallback because a busy CI host paused the loop for
    # 0.25 s; the timeout itself is tested with its production value.
    settings.SENTINEL_LIMITS_REDIS_TIMEOUT = 1.0
    limits.forget_process_state()
    yield
    limits.forget_process_state()


@pytest.fixture
def rdb():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


def run(fn, *args, **kwargs):
    return async_to_sync(fn)(*args, **kwargs)


def make_key(tenant, **options):
    key, _ = api_key_create(tenant=tenant, name=options.pop("name", "k"), **options)
    return key


def admit(key, *, tokens=10, reserve=1000, request_id="req-1", now=None):
    return run(limits.admit, key=key, tokens=tokens, reserve_micros=reserve, request_id=request_id, now=now)


def settle(key, admission, *, micros, tokens=None):
    tokens = admission.tokens if tokens is None else tokens
    run(limits.settle, key=key, admission=admission, actual_micros=micros, actual_tokens=tokens)


def spend(tenant, key, micros, *, at: datetime, request_id: str):
    usage_events_insert(
        records=[
            UsageRecord(
                request_id=request_id,
                tenant_id=tenant.pk,
                api_key_id=key.pk if key else None,
                model="gpt-test",
                created_at=at,
                cost_micros=micros,
            )
        ]
    )


def budget_state(rdb, redis_key) -> dict[str, str]:
    """A budget hash's money fields and reservations (without ``seeded_at``, a timestamp)."""
    return {k.decode(): v.decode() for k, v in rdb.hgetall(redis_key).items() if k != b"seeded_at"}


def dead_redis_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


USD = Decimal


class OwnRedis:
    """A private redis-server on a free port, so a test may stop and restart "Redis" without
    touching the shared one (no persistence: a restart comes back empty)."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "OwnRedis":
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@pytest.fixture
def own_redis():
    server = OwnRedis().start()
    yield server
    server.stop()


@contextlib.contextmanager
def redis_url(url):
    """Point this test process's Redis helpers at ``url`` for a moment (e.g. to drain a spool)."""
    from sentinel_site import redis as sredis

    real = settings.REDIS_URL
    settings.REDIS_URL = url
    sredis.reset_clients()
    try:
        yield
    finally:
        settings.REDIS_URL = real
        sredis.reset_clients()


class DelayingProxy:
    """A TCP proxy to the test Redis that holds back the reply to the first EVALSHA it forwards:
    the script runs, but its answer arrives after the caller's deadline."""

    def __init__(self, target_url: str, delay: float) -> None:
        parts = urlsplit(target_url)
        self.target = (parts.hostname, parts.port or 6379)
        self.db = parts.path or "/0"
        self.delay = delay
        self.used = False
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _pipe(self, reader, writer, *, inspect: bool, state: dict) -> None:
        try:
            while data := await reader.read(65536):
                if inspect and not self.used and b"EVALSHA" in data.upper():
                    self.used = state["armed"] = True
                if not inspect and state.get("armed"):
                    state["armed"] = False
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        state: dict = {}
        await asyncio.gather(
            self._pipe(reader, up_writer, inspect=True, state=state),
            self._pipe(up_reader, writer, inspect=False, state=state),
        )

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stopped = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}{self.db}"
        self.ready.set()
        async with server:
            await self.stopped.wait()

    def start(self) -> "DelayingProxy":
        self.thread.start()
        self.ready.wait(5)
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopped.set)
        self.thread.join(5)
