"""Structured logs: one JSON object a line, with the request context attached.

The context (request id, tenant, key public id) lives in a ContextVar: the gateway is async and
coroutines share a thread, so a thread-local would leak one request's id into another's logs.
"""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime

request_context: ContextVar[dict[str, str] | None] = ContextVar("sentinel_request_context", default=None)


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ctx = request_context.get()
        if ctx:
            for key, value in ctx.items():
                if not hasattr(record, key):
                    setattr(record, key, value)
        return True


_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _RESERVED or key.startswith("_"):
                continue
            if key == "request":
                # Django's request loggers attach the request, whose repr has the query string.
                key, value = "path", getattr(value, "path", "")
            payload[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return scrub(json.dumps(payload, separators=(",", ":")))


_SENTINEL_KEY = re.compile(r"sk-sntl-[A-Za-z0-9_\-]*")


def scrub(line: str) -> str:
    """Last line of defence: a Sentinel key that reached a log line anyway (an exception message,
    a client's mistake echoed back) is replaced before the line is written."""
    return _SENTINEL_KEY.sub("[REDACTED_API_KEY]", line) if "sk-sntl-" in line else line
