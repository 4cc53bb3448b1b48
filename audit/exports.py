"""Rendering exports of a filtered view as CSV or JSON Lines, batch by batch (bounded memory).

CSV cells are formula-injection safe: a text cell a spreadsheet would evaluate (starting with
``= + - @``, their full-width forms, tab or carriage return) is prefixed with an apostrophe.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async

from audit.models import AuditEvent, RequestLog

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}

AUDIT_COLUMNS = (
    "id",
    "seq",
    "created_at",
    "actor_type",
    "actor_id",
    "actor_label",
    "action",
    "target_type",
    "target_id",
    "target_label",
    "before",
    "after",
    "metadata",
    "ip",
    "user_agent",
    "request_id",
    "prev_hash",
    "hash",
)
REQUEST_COLUMNS = (
    "request_id",
    "created_at",
    "key_public_id",
    "endpoint",
    "model",
    "provider",
    "status",
    "http_status",
    "prompt_tokens",
    "completion_tokens",
    "cost_micros",
    "latency_ms",
    "ttft_ms",
    "stream",
    "cache_hit",
    "guardrail_flags",
    "error_type",
    "prompt_text",
)
_JSON_FIELDS = {"before", "after", "metadata", "guardrail_flags"}


def csv_safe(value: Any) -> Any:
    """A cell value a spreadsheet shows as text: formula-looking strings get a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def audit_event_record(event: AuditEvent) -> dict[str, Any]:
    data = {name: getattr(event, name) for name in AUDIT_COLUMNS}
    data["created_at"] = _iso(event.created_at)
    return data


def request_log_record(row: RequestLog) -> dict[str, Any]:
    data = {name: getattr(row, name) for name in REQUEST_COLUMNS}
    data["created_at"] = _iso(row.created_at)
    return data


def _csv_cell(name: str, value: Any) -> Any:
    if name in _JSON_FIELDS:
        value = "" if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)
    elif value is None:
        value = ""
    return csv_safe(value)


def csv_chunks(
    batches: Iterable[list[Any]], columns: tuple[str, ...], to_record: Callable[[Any], dict[str, Any]]
) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    yield buffer.getvalue()
    for batch in batches:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for item in batch:
            record = to_record(item)
            writer.writerow([_csv_cell(name, record[name]) for name in columns])
        yield buffer.getvalue()


def jsonl_chunks(batches: Iterable[list[Any]], to_record: Callable[[Any], dict[str, Any]]) -> Iterator[str]:
    for batch in batches:
        yield "".join(json.dumps(to_record(item), ensure_ascii=False, default=str) + "\n" for item in batch)


def export_chunks(
    fmt: str, batches: Iterable[list[Any]], columns: tuple[str, ...], to_record: Callable[[Any], dict[str, Any]]
) -> Iterator[str]:
    if fmt == "csv":
        return csv_chunks(batches, columns, to_record)
    return jsonl_chunks(batches, to_record)


async def aiter_bytes(chunks: Iterator[str]) -> AsyncIterator[bytes]:
    """Serve a sync chunk iterator (each ``next`` runs a query) to the ASGI server as it is produced:
    Django buffers a *sync* iterator whole under ASGI, so exports stream through this."""
    step = sync_to_async(next, thread_sensitive=True)
    while True:
        chunk = await step(chunks, None)
        if chunk is None:
            return
        yield chunk.encode()
