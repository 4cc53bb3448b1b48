"""Ledger reads for the console: spend per key in its budget period, today's overview, and usage
per tenant for platform operators. All figures come from ``UsageEvent`` (integer micro-dollars).

Calendar boundaries (today, this month) are in the tenant's timezone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from django.db import connection
from django.db.models import Aggregate, Count, F, FloatField, Q, Sum
from django.db.models.functions import Coalesce, TruncHour
from django.utils import timezone

from billing.calendar import local_midnight, local_today, month_start, tenant_tz
from billing.models import UsageEvent
from tenants.models import ApiKey, BudgetPeriod, Tenant

ERROR_STATUSES = (UsageEvent.Status.ERROR, UsageEvent.Status.REJECTED)


class PercentileCont(Aggregate):
    """PostgreSQL ``percentile_cont(q) WITHIN GROUP (ORDER BY expr)``."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, percentile: float, **extra):
        super().__init__(expression, percentile=float(percentile), **extra)


def period_start(*, tenant: Tenant, period: str, now: datetime | None = None) -> datetime | None:
    """Start of the current budget ``period`` in the tenant's calendar (None for ``total``)."""
    today = local_today(tenant, now)
    if period == BudgetPeriod.DAY:
        return local_midnight(tenant, today)
    if period == BudgetPeriod.MONTH:
        return local_midnight(tenant, month_start(today))
    return None


def key_spend_this_period(*, tenant: Tenant, keys: Iterable[ApiKey]) -> dict[int, int]:
    """Micro-dollars each key spent in its own budget period so far (one query per distinct period)."""
    by_period: dict[str, list[int]] = {}
    for key in keys:
        if key.tenant_id != tenant.pk:
            raise ValueError("key of another tenant")
        by_period.setdefault(key.budget_period, []).append(key.pk)
    spend: dict[int, int] = {}
    now = timezone.now()
    for period, ids in by_period.items():
        events = UsageEvent.objects.filter(tenant=tenant, api_key_id__in=ids)
        start = period_start(tenant=tenant, period=period, now=now)
        if start is not None:
            events = events.filter(created_at__gte=start)
        for row in events.values("api_key_id").annotate(total=Sum("cost_micros")).order_by():
            spend[row["api_key_id"]] = int(row["total"] or 0)
    for ids in by_period.values():
        for key_id in ids:
            spend.setdefault(key_id, 0)
    return spend


def tenant_spend_this_period(*, tenant: Tenant) -> int:
    """Micro-dollars the tenant spent in its own budget period so far."""
    events = UsageEvent.objects.filter(tenant=tenant)
    start = period_start(tenant=tenant, period=tenant.budget_period)
    if start is not None:
        events = events.filter(created_at__gte=start)
    return int(events.aggregate(total=Coalesce(Sum("cost_micros"), 0))["total"])


@dataclass(frozen=True)
class Ranked:
    label: str
    requests: int
    spend_micros: int
    key_id: int | None = None


@dataclass(frozen=True)
class TodaySummary:
    day: date
    requests: int
    errors: int
    tokens: int
    spend_micros: int
    p50_ms: int | None
    p95_ms: int | None
    budget_spend_micros: int
    top_models: list[Ranked] = field(default_factory=list)
    top_keys: list[Ranked] = field(default_factory=list)
    hours: list[str] = field(default_factory=list)
    hourly_requests: list[int] = field(default_factory=list)
    hourly_errors: list[int] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def _percentiles(events, qs: tuple[float, ...]) -> list[int | None]:
    if connection.vendor == "postgresql":
        row = events.aggregate(**{f"p{i}": PercentileCont("latency_ms", q) for i, q in enumerate(qs)})
        return [None if row[f"p{i}"] is None else round(row[f"p{i}"]) for i in range(len(qs))]
    values = sorted(events.values_list("latency_ms", flat=True))
    if not values:
        return [None for _ in qs]
    return [values[min(len(values) - 1, round(q * (len(values) - 1)))] for q in qs]


def tenant_today_summary(*, tenant: Tenant, top: int = 5, now: datetime | None = None) -> TodaySummary:
    """Today's traffic (tenant's calendar day): totals, latency percentiles, top models and keys, and
    requests per hour."""
    tz = tenant_tz(tenant)
    now = now or timezone.now()
    start = local_midnight(tenant, local_today(tenant, now))
    today = UsageEvent.objects.filter(tenant=tenant, created_at__gte=start)
    totals = today.aggregate(
        requests=Count("pk"),
        errors=Count("pk", filter=Q(status__in=ERROR_STATUSES)),
        tokens=Coalesce(Sum(F("prompt_tokens") + F("completion_tokens")), 0),
        spend=Coalesce(Sum("cost_micros"), 0),
    )
    p50, p95 = _percentiles(today.filter(status=UsageEvent.Status.OK), (0.5, 0.95))
    models = [
        Ranked(label=row["model"], requests=row["n"], spend_micros=int(row["spend"]))
        for row in today.values("model")
        .annotate(n=Count("pk"), spend=Coalesce(Sum("cost_micros"), 0))
        .order_by("-spend", "-n", "model")[:top]
    ]
    key_rows = list(
        today.filter(api_key__isnull=False)
        .values("api_key_id")
        .annotate(n=Count("pk"), spend=Coalesce(Sum("cost_micros"), 0))
        .order_by("-spend", "-n", "api_key_id")[:top]
    )
    names = dict(
        ApiKey.objects.filter(tenant=tenant, pk__in=[r["api_key_id"] for r in key_rows]).values_list("pk", "name")
    )
    keys = [
        Ranked(
            label=names.get(r["api_key_id"], "deleted key"),
            requests=r["n"],
            spend_micros=int(r["spend"]),
            key_id=r["api_key_id"],
        )
        for r in key_rows
    ]
    per_hour = {
        row["hour"].astimezone(tz).hour: (row["n"], row["err"])
        for row in today.annotate(hour=TruncHour("created_at", tzinfo=tz))
        .values("hour")
        .annotate(n=Count("pk"), err=Count("pk", filter=Q(status__in=ERROR_STATUSES)))
        .order_by("hour")
    }
    current_hour = now.astimezone(tz).hour
    hours = [f"{h:02d}:00" for h in range(current_hour + 1)]
    if tenant.budget_period == BudgetPeriod.DAY:
        budget_spend = int(totals["spend"])
    else:
        budget_spend = tenant_spend_this_period(tenant=tenant)
    return TodaySummary(
        day=local_today(tenant, now),
        requests=totals["requests"],
        errors=totals["errors"],
        tokens=int(totals["tokens"]),
        spend_micros=int(totals["spend"]),
        p50_ms=p50,
        p95_ms=p95,
        budget_spend_micros=budget_spend,
        top_models=models,
        top_keys=keys,
        hours=hours,
        hourly_requests=[per_hour.get(h, (0, 0))[0] for h in range(current_hour + 1)],
        hourly_errors=[per_hour.get(h, (0, 0))[1] for h in range(current_hour + 1)],
    )


@dataclass(frozen=True)
class TenantUsage:
    requests: int
    spend_micros: int


def tenant_usage_since(*, tenant_ids: Iterable[int], since: datetime) -> dict[int, TenantUsage]:
    """Requests and spend per tenant since ``since`` (platform operators' tenant list)."""
    ids = list(tenant_ids)
    rows = (
        UsageEvent.objects.filter(tenant_id__in=ids, created_at__gte=since)
        .values("tenant_id")
        .annotate(n=Count("pk"), spend=Coalesce(Sum("cost_micros"), 0))
        .order_by()
    )
    usage = {row["tenant_id"]: TenantUsage(requests=row["n"], spend_micros=int(row["spend"])) for row in rows}
    return {tid: usage.get(tid, TenantUsage(0, 0)) for tid in ids}
