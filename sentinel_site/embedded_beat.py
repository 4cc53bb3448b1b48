"""The embedded default's scheduler: Celery beat's schedule run on a thread of the web process.

With ``REDIS_URL`` unset (``make run``) there is no broker, worker or beat, yet usage must still be
rolled up, budget alerts checked, statements closed and stale reservations reconciled. The ASGI
application starts this thread there (``SENTINEL_EMBEDDED_BEAT``, default on in that mode); it runs
each task of ``CELERY_BEAT_SCHEDULE`` in-process at its interval. Each task is idempotent, so a
restart that runs one early changes nothing. With Redis configured the real beat runs them instead
and this thread never starts.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections

log = logging.getLogger("sentinel.embedded_beat")

FIRST_RUN_SECONDS = 5.0  # let the server come up before the first round
_started = threading.Lock()
_thread: threading.Thread | None = None


def _task(dotted: str) -> Callable[[], object]:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


class EmbeddedBeat:
    def __init__(self, schedule: dict[str, dict], *, now: float | None = None) -> None:
        start = time.monotonic() if now is None else now
        self.entries = {name: (entry["task"], float(entry["schedule"])) for name, entry in schedule.items()}
        self.due = {name: start + min(FIRST_RUN_SECONDS, interval) for name, (_, interval) in self.entries.items()}

    def run_due(self, now: float) -> list[str]:
        """Run every task that is due at ``now``; returns their names. A failing task is logged and
        tried again at its next interval."""
        ran = []
        for name, (dotted, interval) in self.entries.items():
            if now < self.due[name]:
                continue
            self.due[name] = now + interval
            try:
                _task(dotted)()
                ran.append(name)
            except Exception:
                log.exception("embedded beat: %s failed", name)
            finally:
                close_old_connections()
        return ran

    def forever(self) -> None:
        while True:
            self.run_due(time.monotonic())
            time.sleep(1.0)


def enabled() -> bool:
    return not settings.REDIS_URL and settings.SENTINEL_EMBEDDED_BEAT


def start() -> bool:
    """Start the thread once per process, when the embedded default is in use."""
    global _thread
    if not enabled():
        return False
    with _started:
        if _thread is None:
            beat = EmbeddedBeat(settings.CELERY_BEAT_SCHEDULE)
            _thread = threading.Thread(target=beat.forever, name="sentinel-embedded-beat", daemon=True)
            _thread.start()
            log.info("embedded beat: running %d scheduled tasks in-process (no Redis configured)", len(beat.entries))
    return True
