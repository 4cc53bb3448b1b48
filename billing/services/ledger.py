"""The ledger write: one idempotent statement per batch, plus the rows that must commit with it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from django.db import connection, transaction
from django.db.models import Q

from audit.services import request_log_insert
from billing.models import PendingRollup, UsageEvent
from billing.usage import UsageRecord
from tenants.models import ApiKey

# Rows per INSERT statement: 500 rows x 25 columns stays far below every backend's parameter limit.
INSERT_BATCH = 500


def _event(record: UsageRecord) -> UsageEvent:
    return UsageEvent(
        request_id=record.request_id,
        tenant_id=record.tenant_id,
        api_key_id=record.api_key_id,
        created_at=record.created_at,
        endpoint=record.endpoint,
        model=record.model,
        provider=record.provider,
        route=record.route,
        attempts=record.attempts,
        prompt_tokens=record.prompt_tokens,
        cached_tokens=record.cached_tokens,
        completion_tokens=record.completion_tokens,
        reasoning_tokens=record.reasoning_tokens,
        cost_micros=record.cost_micros,
        price_id=record.price_id,
        adjustment_percent=record.adjustment_percent,
        status=record.status,
        http_status=record.http_status,
        latency_ms=record.latency_ms,
        ttft_ms=record.ttft_ms,
        estimated=record.estimated,
        cache_hit=record.cache_hit,
        stream=record.stream,
        tags=record.tags,
    )


def _insert_returning(events: Sequence[UsageEvent]) -> set[str]:
    """``INSERT ... ON CONFLICT (request_id) DO NOTHING RETURNING request_id``: the request ids
    this statement actually wrote. (``bulk_create(ignore_conflicts=True)`` cannot tell which.)"""
    meta = UsageEvent._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    qn = connection.ops.quote_name
    columns = ", ".join(qn(f.column) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    written: set[str] = set()
    with connection.cursor() as cursor:
        for i in range(0, len(events), INSERT_BATCH):
            chunk = events[i : i + INSERT_BATCH]
            # identifiers come from the model's meta; every value is a bound parameter
            values = ", ".join([row] * len(chunk))
            sql = f"INSERT INTO {qn(meta.db_table)} ({columns}) VALUES {values} "  # noqa: S608
            sql += f"ON CONFLICT ({qn('request_id')}) DO NOTHING RETURNING {qn('request_id')}"
            params = [f.get_db_prep_save(getattr(event, f.attname), connection) for event in chunk for f in fields]
            cursor.execute(sql, params)
            written.update(r[0] for r in cursor.fetchall())
    return written


def _hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def usage_events_insert(*, records: Sequence[UsageRecord]) -> list[UsageRecord]:
    """Write usage records to the ledger, exactly once per request id, and return the ones that
    were new (a request id already in the ledger, or repeated in ``records``, is skipped).

    In the same transaction: the request-log rows (audit) of the new records, and a stale mark for
    each (tenant, hour) they touch, so rollups catch up however late an event arrives.
    """
    unique: dict[str, UsageRecord] = {}
    for record in records:
        unique.setdefault(record.request_id, record)
    if not unique:
        return []
    with transaction.atomic():
        written = _insert_returning([_event(r) for r in unique.values()])
        new = [r for r in unique.values() if r.request_id in written]
        if new:
            hours = {(r.tenant_id, _hour(r.created_at)) for r in new}
            PendingRollup.objects.bulk_create([PendingRollup(tenant_id=t, hour=h) for t, h in sorted(hours)])
            request_log_insert(records=new)
            _touch_keys(new)
    return new


def _touch_keys(records: Sequence[UsageRecord]) -> None:
    """``ApiKey.last_used_at``: one UPDATE per key per batch, never on the request path, and
    never moved backwards by a late event."""
    latest: dict[tuple[int, int], datetime] = {}
    for record in records:
        owner = (record.tenant_id, record.api_key_id)
        if record.api_key_id and (owner not in latest or record.created_at > latest[owner]):
            latest[owner] = record.created_at
    for (tenant_id, key_id), at in latest.items():
        ApiKey.objects.filter(tenant_id=tenant_id, pk=key_id).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=at)
        ).update(last_used_at=at)
