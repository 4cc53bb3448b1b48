"""Billing writes. ``usage_submit`` is the gateway's one hand-off into billing."""

from __future__ import annotations

from collections.abc import Iterable

from asgiref.sync import sync_to_async

from billing.models import UsageEvent
from billing.usage import UsageRecord


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


def usage_events_insert(*, records: Iterable[UsageRecord]) -> int:
    """Idempotent bulk insert: a request id already in the ledger is skipped
    (``ON CONFLICT (request_id) DO NOTHING``). Returns how many records were offered."""
    events = [_event(r) for r in records]
    UsageEvent.objects.bulk_create(events, ignore_conflicts=True, batch_size=500)
    return len(events)


async def usage_submit(record: UsageRecord) -> None:
    """Hand one request's usage to billing. Called exactly once per gateway request."""
    await sync_to_async(usage_events_insert, thread_sensitive=False)(records=[record])
