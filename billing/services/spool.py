"""The usage spool: a Redis Stream between the gateway and the ledger.

The gateway's request path does one ``XADD`` (no SQL). A consumer group drains the stream into
PostgreSQL: ``XREADGROUP`` new entries, ``XAUTOCLAIM`` entries left pending by a consumer that died,
insert them idempotently (``ON CONFLICT (request_id) DO NOTHING``), and ``XACK`` + ``XDEL`` only
after the insert committed. A consumer killed at any point therefore loses nothing (its entries
stay pending and are claimed again) and duplicates nothing (the ledger skips a request id it has).

Without Redis (the embedded default), or when Redis is unreachable, ``usage_submit`` writes the
record straight to the ledger instead. Durability across a Redis restart is Redis' own (AOF).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.db import DatabaseError, DataError, IntegrityError
from redis.exceptions import ResponseError

from billing.services.ledger import usage_events_insert
from billing.usage import UsageRecord
from gateway import metrics
from gateway.limits import hot_call
from sentinel_site import redis as sredis
from sentinel_site.db import released

log = logging.getLogger("sentinel.billing.spool")

GROUP = "ledger"
FIELD = "r"
DEFAULT_BATCH = 500
# An entry pending this long belongs to a consumer presumed dead (a batch takes well under a second).
DEFAULT_CLAIM_IDLE_MS = 60_000
# Consumers with nothing pending and idle this long are forgotten (crashed workers' names).
FORGET_CONSUMER_IDLE_MS = 3_600_000
# How long one XADD may take before the record goes to the ledger directly instead.
SUBMIT_TIMEOUT = 2.0


def spool_key() -> str:
    return sredis.rkey("billing", "usage_spool")


def dead_letter_key() -> str:
    return sredis.rkey("billing", "usage_spool", "dead")


def consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --------------------------------------------------------------------------- submit (hot path)
def _store_now(record: UsageRecord) -> None:
    try:
        usage_events_insert(records=[record])
    except DatabaseError:
        # Neither Redis nor the database took it: the log line is the last copy, written so an
        # operator can replay it (the ledger skips it if it did land after all).
        log.critical(
            "usage record not stored; replay it from this log line",
            extra={"usage_record": json.dumps(record.as_dict())},
            exc_info=True,
        )


async def usage_submit(record: UsageRecord) -> None:
    """Hand one request's usage to billing. Called exactly once per gateway request.

    One ``XADD`` to the spool, on the hot path's pipelined client (it shares a write with the
    request's settlement); no SQL on the request path. Redis not configured or unreachable -> the
    record goes straight to the ledger (in a worker thread). Never raises: a lost record is logged
    in full. An ``XADD`` that timed out but did land is not a duplicate: the ledger skips a
    request id it has.
    """
    if sredis.enabled():
        payload = json.dumps(record.as_dict(), separators=(",", ":"))
        try:
            await hot_call(lambda client: client.xadd(spool_key(), {FIELD: payload}), timeout=SUBMIT_TIMEOUT)
            return
        except Exception as exc:  # any failure to spool (Redis down, a broken client): the ledger takes it
            log.warning("usage spool unavailable (%r); writing %s straight to the ledger", exc, record.request_id)
    await sync_to_async(released(_store_now), thread_sensitive=False)(record)


# --------------------------------------------------------------------------- drain (worker)
@dataclass(slots=True)
class DrainResult:
    read: int = 0
    inserted: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    reclaimed: int = 0
    remaining: int = 0

    def summary(self) -> str:
        return (
            f"usage spool: read {self.read} ({self.reclaimed} reclaimed), inserted {self.inserted}, "
            f"duplicates {self.duplicates}, dead-lettered {self.dead_lettered}, remaining {self.remaining}"
        )


def _ensure_group(client) -> None:
    try:
        client.xgroup_create(spool_key(), GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _forget_dead_consumers(client, me: str) -> None:
    for info in client.xinfo_consumers(spool_key(), GROUP):
        name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
        if name != me and info["pending"] == 0 and info["idle"] > FORGET_CONSUMER_IDLE_MS:
            client.xgroup_delconsumer(spool_key(), GROUP, name)


def _parse(entries: list) -> tuple[list[tuple[bytes, UsageRecord]], list[tuple[bytes, bytes, str]]]:
    good: list[tuple[bytes, UsageRecord]] = []
    bad: list[tuple[bytes, bytes, str]] = []
    for entry_id, fields in entries:
        raw = (fields or {}).get(FIELD.encode(), b"")
        try:
            good.append((entry_id, UsageRecord.from_dict(json.loads(raw))))
        except (ValueError, TypeError, KeyError) as exc:
            bad.append((entry_id, raw, f"unreadable: {exc}"))
    return good, bad


def _store(good: list[tuple[bytes, UsageRecord]], bad: list[tuple[bytes, bytes, str]]) -> int:
    """Insert the batch; returns how many were new. A record the database refuses (a data error,
    a tenant that does not exist) is dead-lettered alone instead of blocking the spool. Any other
    database error propagates: the entries stay pending and are retried."""
    try:
        return len(usage_events_insert(records=[r for _, r in good]))
    except (IntegrityError, DataError):
        log.warning("usage batch refused by the database; retrying its %d records one by one", len(good))
    inserted = 0
    for entry_id, record in good:
        try:
            inserted += len(usage_events_insert(records=[record]))
        except (IntegrityError, DataError) as exc:
            bad.append((entry_id, json.dumps(record.as_dict()).encode(), f"refused: {exc}"[:500]))
    return inserted


def _settle(client, entry_ids: list[bytes], bad: list[tuple[bytes, bytes, str]]) -> None:
    """Dead-letter the bad entries and acknowledge + delete the whole batch, atomically."""
    pipe = client.pipeline(transaction=True)
    for entry_id, raw, error in bad:
        pipe.xadd(dead_letter_key(), {FIELD: raw, "error": error, "entry": entry_id})
    pipe.xack(spool_key(), GROUP, *entry_ids)
    pipe.xdel(spool_key(), *entry_ids)
    pipe.execute()
    for entry_id, _, error in bad:
        log.error("usage spool entry %s dead-lettered: %s", entry_id.decode(), error)


def _next_batch(client, me: str, batch_size: int, claim_idle_ms: int) -> tuple[list, int]:
    """Our own pending entries first (a batch we failed to store), then entries a dead consumer
    left pending for ``claim_idle_ms``, then new ones. Returns (entries, how many were reclaimed)."""
    own = client.xreadgroup(GROUP, me, {spool_key(): "0"}, count=batch_size)
    entries = own[0][1] if own else []
    if entries:
        return entries, len(entries)
    _, entries, _ = client.xautoclaim(spool_key(), GROUP, me, claim_idle_ms, start_id="0-0", count=batch_size)
    if entries:
        return entries, len(entries)
    new = client.xreadgroup(GROUP, me, {spool_key(): ">"}, count=batch_size)
    return (new[0][1] if new else []), 0


def usage_spool_drain(
    *,
    max_seconds: float = 10.0,
    batch_size: int = DEFAULT_BATCH,
    claim_idle_ms: int = DEFAULT_CLAIM_IDLE_MS,
    consumer: str | None = None,
) -> DrainResult:
    """Move spooled usage into the ledger until the spool is empty or ``max_seconds`` have passed.

    Safe to run concurrently (consumer group) and to kill at any point (see the module docstring).
    Also the graceful-shutdown hook of the ASGI server and the Celery worker. Sets the
    ``sentinel_usage_spool_lag`` gauge to the entries still waiting.
    """
    result = DrainResult()
    client = sredis.sync_client()
    if client is None:
        return result
    me = consumer or consumer_name()
    _ensure_group(client)
    _forget_dead_consumers(client, me)
    deadline = time.monotonic() + max_seconds
    while True:
        entries, reclaimed = _next_batch(client, me, batch_size, claim_idle_ms)
        if not entries:
            break
        good, bad = _parse(entries)
        inserted = _store(good, bad) if good else 0
        _settle(client, [entry_id for entry_id, _ in entries], bad)
        result.read += len(entries)
        result.reclaimed += reclaimed
        result.inserted += inserted
        result.dead_lettered += len(bad)
        result.duplicates += len(entries) - len(bad) - inserted
        if time.monotonic() >= deadline:
            break
    result.remaining = client.xlen(spool_key())
    metrics.usage_spool_lag.set(result.remaining)
    return result


def usage_spool_lag() -> int:
    """Entries waiting in the spool (0 without Redis)."""
    client = sredis.sync_client()
    return int(client.xlen(spool_key())) if client is not None else 0
