from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tenants.services import api_key_create
from tests.conftest import ARTIFACTS, ROOT, free_port, server_env


class ServeProcess:
    """``python -m sentinel_site.serve`` in a subprocess, on a free loopback port."""

    def __init__(self, *args: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = ["--host", "127.0.0.1", "--port", str(self.port), *args]
        self.env = server_env(**env)
        self.log_path: Path = ARTIFACTS / f"serve-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> ServeProcess:
        ARTIFACTS.mkdir(exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sentinel_site.serve", *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stop() kills the group: granian's workers are children
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited {self.proc.returncode}: {self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health/live", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"serve did not start: {self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # workers too, also when the parent is gone
            if self.proc.poll() is None:
                self.proc.wait(timeout=10)
        if hasattr(self, "_log"):
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def serve():
    started: list[ServeProcess] = []

    def make(*args: str, **env: str) -> ServeProcess:
        process = ServeProcess(*args, **env).start()
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()


@pytest.fixture
def api_token(catalog, tenant, user) -> str:
    _, token = api_key_create(tenant=tenant, actor=user, name="observability")
    return token
