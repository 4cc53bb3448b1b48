"""Shared fixtures: real PostgreSQL (pytest-django), real Redis, a real ASGI server in a subprocess,
and the mock LLM provider as a real HTTP server on a loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from tests.factories import TenantFactory, UserFactory

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(**extra: str) -> dict[str, str]:
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="sentinel_site.test_settings",
        DATABASE_URL=f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        REDIS_URL=settings.REDIS_URL,
        SENTINEL_REDIS_PREFIX=settings.SENTINEL_REDIS_PREFIX,
        SENTINEL_ENV="test",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class LiveServer:
    """A real daphne process serving sentinel_site.asgi on a free loopback port."""

    def __init__(self, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = ARTIFACTS / f"server-{self.port}.log"
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self) -> LiveServer:
        ARTIFACTS.mkdir(exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "sentinel_site.asgi:application",
            ],
            cwd=ROOT,
            env=server_env(**self.env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health/live", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture(scope="session")
def live_server_factory(django_db_setup, django_db_blocker):
    servers: list[LiveServer] = []

    def make(**env: str) -> LiveServer:
        server = LiveServer(**env).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def gateway(live_server_factory) -> LiveServer:
    return live_server_factory()


@pytest.fixture(scope="session")
def mock_upstream():
    from loadtests.mock_provider import MockProvider

    provider = MockProvider().start()
    yield provider
    provider.stop()


@pytest.fixture
def upstream(mock_upstream):
    mock_upstream.reset()
    return mock_upstream


@pytest.fixture(autouse=True)
def _clean_redis():
    yield
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=f"{settings.SENTINEL_REDIS_PREFIX}*", count=1000))
    keep = [k for k in keys if b"bus:" in k]
    for i in range(0, len(keys), 500):
        batch = [k for k in keys[i : i + 500] if k not in keep]
        if batch:
            client.delete(*batch)


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def tenant(db):
    return TenantFactory(name="Tenant A", slug="tenant-a")


@pytest.fixture
def other_tenant(db):
    return TenantFactory(name="Tenant B", slug="tenant-b")


def catalog_for(upstream_url: str) -> dict:
    """A catalog whose providers are the mock upstream over real HTTP."""
    return {
        "providers": [
            {"name": "mock-openai", "kind": "openai", "base_url": f"{upstream_url}/v1"},
            {"name": "mock-backup", "kind": "openai", "base_url": f"{upstream_url}/v1"},
            {"name": "mock-anthropic", "kind": "anthropic", "base_url": upstream_url},
            {"name": "builtin", "kind": "mock"},
            # Its key variable is never set: its models are not served (and not listed).
            {
                "name": "unkeyed",
                "kind": "openai",
                "base_url": f"{upstream_url}/v1",
                "api_key_env": "SENTINEL_TEST_UNSET_PROVIDER_KEY",
            },
        ],
        "models": [
            {
                "name": "gpt-test",
                "routes": [{"provider": "mock-openai", "model": "gpt-test"}],
                "price": {"input": 1.0, "cached_input": 0.5, "output": 2.0},
                "max_output_tokens": 1000,
            },
            {
                "name": "claude-test",
                "routes": [{"provider": "mock-anthropic", "model": "claude-test"}],
                "price": {"input": 3.0, "cached_input": 0.3, "output": 15.0},
                "max_output_tokens": 1000,
            },
            {
                "name": "embed-test",
                "kind": "embedding",
                "routes": [{"provider": "mock-openai", "model": "embed-test"}],
                "price": {"input": 0.02, "output": 0},
            },
            {
                "name": "builtin-test",
                "routes": [{"provider": "builtin", "model": "builtin-test"}],
                "price": {"input": 1.0, "output": 2.0},
            },
            {
                "name": "flaky-test",
                "routes": [
                    {"provider": "mock-openai", "model": "flaky-fail500", "priority": 1},
                    {"provider": "mock-backup", "model": "flaky-backup", "priority": 2},
                ],
                "price": {"input": 1.0, "output": 2.0},
            },
            {
                "name": "hang-test",
                "routes": [{"provider": "mock-openai", "model": "hang-hang", "timeout": 1.5}],
                "price": {"input": 1.0, "output": 2.0},
            },
            {
                "name": "reset-test",
                "routes": [{"provider": "mock-openai", "model": "reset-reset"}],
                "price": {"input": 1.0, "output": 2.0},
            },
            {"name": "unpriced-test", "routes": [{"provider": "mock-openai", "model": "unpriced"}]},
            {
                "name": "unkeyed-test",
                "routes": [{"provider": "unkeyed", "model": "unkeyed-test"}],
                "price": {"input": 1.0, "output": 2.0},
            },
        ],
    }


@pytest.fixture
def catalog(transactional_db, upstream):
    from gateway.catalog_sync import catalog_sync

    return catalog_sync(data=catalog_for(upstream.url))
