"""Ledger rows for console tests, written through billing's real insert service."""

from __future__ import annotations

import itertools
from datetime import datetime

from django.utils import timezone

from billing.services import usage_events_insert
from billing.usage import UsageRecord

_ids = itertools.count(1)


def add_usage(
    *,
    tenant,
    key=None,
    model: str = "gpt-test",
    cost_micros: int = 1000,
    at: datetime | None = None,
    status: str = "ok",
    latency_ms: int = 100,
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    count: int = 1,
) -> None:
    records = [
        UsageRecord(
            request_id=f"console-test-{next(_ids)}-{tenant.pk}",
            tenant_id=tenant.pk,
            api_key_id=key.pk if key else None,
            model=model,
            created_at=at or timezone.now(),
            cost_micros=cost_micros,
            status=status,
            http_status=200 if status == "ok" else 502,
            latency_ms=latency_ms,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )
        for _ in range(count)
    ]
    assert len(usage_events_insert(records=records)) == count
