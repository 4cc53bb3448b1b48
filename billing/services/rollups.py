"""Rollups: hourly and daily usage recomputed from the ledger.

Idempotent by construction: a window is recomputed as delete + insert from ``UsageEvent`` in one
transaction, under a per-tenant advisory lock (concurrent recomputes of one tenant serialise; the
unique index on the dimensions would refuse a double row anyway). Rerunning any window gives the
same rows, so rollups always equal the ledger they were computed from.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db import connection, transaction
from django.db.models import CharField, Count, DateTimeField, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Cast, Coalesce, TruncDate, TruncHour
from django.utils import timezone

from billing.calendar import day_bounds, local_days_of_hour, tenant_tz
from billing.models import DailyBreakdown, DailyUsage, HourlyUsage, PendingRollup, UsageEvent
from tenants.models import Tenant

_LOCK_NAMESPACE = 0x5E18  # pg_advisory_xact_lock(namespace, tenant_id)
ERROR_STATUSES = (UsageEvent.Status.ERROR, UsageEvent.Status.REJECTED)
DIMENSIONS = ("api_key_id", "model", "price_id", "adjustment_percent", "tags")
# aggregate aliases are prefixed: an annotation may not share a name with a model field
TOTALS = {
    "n_requests": Count("pk"),
    "n_error_requests": Count("pk", filter=Q(status__in=ERROR_STATUSES)),
    "n_cache_hits": Count("pk", filter=Q(cache_hit=True)),
    "n_estimated_requests": Count("pk", filter=Q(estimated=True)),
    "n_prompt_tokens": Sum("prompt_tokens"),
    "n_cached_tokens": Sum("cached_tokens"),
    "n_completion_tokens": Sum("completion_tokens"),
    "n_reasoning_tokens": Sum("reasoning_tokens"),
    "n_cost_micros": Sum("cost_micros"),
}
TOTAL_FIELDS = [name.removeprefix("n_") for name in TOTALS]
INSERT_BATCH = 2000
HOURS_PER_SLICE = 24 * 7  # bounds the work of one statement
DAYS_PER_SLICE = 31


@dataclass(slots=True)
class RollupResult:
    tenants: int = 0
    hours: int = 0
    days: int = 0
    hourly_rows: int = 0
    daily_rows: int = 0

    def summary(self) -> str:
        return (
            f"rollups: {self.tenants} tenants, {self.hours} hours -> {self.hourly_rows} hourly rows, "
            f"{self.days} days -> {self.daily_rows} daily rows"
        )


def _lock(tenant_id: int) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_NAMESPACE, tenant_id])


def _runs(points: Iterable, step: timedelta, slice_len: int) -> Iterator[tuple]:
    """Sorted points -> contiguous [first, last] runs of at most ``slice_len`` points."""
    run: list = []
    for point in sorted(set(points)):
        if run and (point - run[-1] != step or len(run) >= slice_len):
            yield run[0], run[-1]
            run = []
        run.append(point)
    if run:
        yield run[0], run[-1]


def _insert_select(model, rows: QuerySet, columns: list[str]) -> int:
    """``INSERT INTO <model> (<columns>) SELECT …``: the database computes and writes the rows, none
    passes through Python. ``rows`` is a ``values_list`` in ``columns`` order."""
    qn = connection.ops.quote_name
    select, params = rows.query.sql_with_params()
    target = ", ".join(qn(model._meta.get_field(name).column) for name in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {qn(model._meta.db_table)} ({target}) {select}", params)
        return cursor.rowcount


def _rollup_rows(events: QuerySet, tenant: Tenant, bucket, now: datetime) -> QuerySet:
    grouped = events.annotate(bucket=bucket).values("bucket", *DIMENSIONS).annotate(**TOTALS).order_by()
    constants = grouped.annotate(t=Value(tenant.pk), at=Value(now, output_field=DateTimeField()))
    return constants.values_list("t", "bucket", *DIMENSIONS, *TOTALS, "at")


ROLLUP_COLUMNS = ["api_key", "model", "price", "adjustment_percent", "tags", *TOTAL_FIELDS, "computed_at"]


def _recompute_hours(tenant: Tenant, first: datetime, last: datetime, now: datetime) -> int:
    end = last + timedelta(hours=1)
    HourlyUsage.objects.filter(tenant=tenant, hour__gte=first, hour__lt=end).delete()
    events = UsageEvent.objects.filter(tenant=tenant, created_at__gte=first, created_at__lt=end)
    rows = _rollup_rows(events, tenant, TruncHour("created_at", tzinfo=UTC), now)
    return _insert_select(HourlyUsage, rows, ["tenant", "hour", *ROLLUP_COLUMNS])


def _recompute_days(tenant: Tenant, first: date, last: date, now: datetime) -> int:
    start, end = day_bounds(tenant, first, last)
    DailyUsage.objects.filter(tenant=tenant, day__gte=first, day__lte=last).delete()
    DailyBreakdown.objects.filter(tenant=tenant, day__gte=first, day__lte=last).delete()
    events = UsageEvent.objects.filter(tenant=tenant, created_at__gte=start, created_at__lt=end)
    rows = _rollup_rows(events, tenant, TruncDate("created_at", tzinfo=tenant_tz(tenant)), now)
    inserted = _insert_select(DailyUsage, rows, ["tenant", "day", *ROLLUP_COLUMNS])
    _recompute_breakdown(tenant, DailyUsage.objects.filter(tenant=tenant, day__gte=first, day__lte=last), now)
    return inserted


def _recompute_breakdown(tenant: Tenant, daily: QuerySet, now: datetime) -> None:
    """The day rows summed one dimension at a time: total, model and key in SQL, tag values
    (keys of a JSON object) in Python over the tagged rows only."""
    sums = {f"n_{name}": Sum(name) for name in TOTAL_FIELDS}
    no_key = Coalesce(Cast("api_key_id", CharField()), Value(""))
    for dimension, value in [
        (DailyBreakdown.TOTAL, Value("")),
        (DailyBreakdown.MODEL, F("model")),
        (DailyBreakdown.KEY, no_key),
    ]:
        grouped = daily.annotate(v=value).values("day", "v").annotate(**sums).order_by()
        constants = grouped.annotate(
            t=Value(tenant.pk), d=Value(dimension), at=Value(now, output_field=DateTimeField())
        )
        rows = constants.values_list("t", "day", "d", "v", *sums, "at")
        _insert_select(DailyBreakdown, rows, ["tenant", "day", "dimension", "value", *TOTAL_FIELDS, "computed_at"])
    tags: dict[tuple[date, str, str], list[int]] = {}
    for day, row_tags, *values in daily.exclude(tags={}).values_list("day", "tags", *TOTAL_FIELDS).iterator(5000):
        for key, text in _tag_values(row_tags):
            acc = tags.setdefault((day, DailyBreakdown.TAG_PREFIX + key[:76], text[:255]), [0] * len(TOTAL_FIELDS))
            for i, v in enumerate(values):
                acc[i] += v
    DailyBreakdown.objects.bulk_create(
        [
            DailyBreakdown(
                tenant=tenant,
                day=day,
                dimension=dimension,
                value=value,
                computed_at=now,
                **dict(zip(TOTAL_FIELDS, acc, strict=True)),
            )
            for (day, dimension, value), acc in tags.items()
        ],
        batch_size=INSERT_BATCH,
    )


def _tag_values(tags) -> list[tuple[str, str]]:
    """Tag values as text, the way PostgreSQL's ``tags ->> key`` reads them; a missing, null or
    empty value counts as untagged."""
    if not isinstance(tags, dict):
        return []
    out = []
    for key, value in tags.items():
        text = value if isinstance(value, str) else None if value is None else json.dumps(value)
        if text:
            out.append((str(key), text))
    return out


def _recompute(tenant: Tenant, hours: set[datetime], result: RollupResult) -> None:
    now = timezone.now()
    days: set[date] = set()
    for hour in hours:
        days |= local_days_of_hour(tenant, hour)
    for first, last in _runs(hours, timedelta(hours=1), HOURS_PER_SLICE):
        result.hourly_rows += _recompute_hours(tenant, first, last, now)
    for first, last in _runs(days, timedelta(days=1), DAYS_PER_SLICE):
        result.daily_rows += _recompute_days(tenant, first, last, now)
    result.hours += len(hours)
    result.days += len(days)


def _hours_between(start: datetime, end: datetime) -> set[datetime]:
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = set()
    while hour < end:
        hours.add(hour)
        hour += timedelta(hours=1)
    return hours


def usage_rollup_window(*, tenant: Tenant, start: datetime, end: datetime) -> RollupResult:
    """Recompute the hourly rollups of every hour overlapping [start, end) and the daily rollups of
    every tenant day those hours touch. Safe to rerun for any window."""
    result = RollupResult(tenants=1)
    with transaction.atomic():
        _lock(tenant.pk)
        _recompute(tenant, _hours_between(start, end), result)
    return result


def usage_rollup_days(*, tenant: Tenant, first: date, last: date) -> RollupResult:
    """Recompute the tenant's days ``first``..``last`` (its calendar) and their hours."""
    start, end = day_bounds(tenant, first, last)
    return usage_rollup_window(tenant=tenant, start=start, end=end)


def usage_rollup_pending(*, tenant: Tenant | None = None) -> RollupResult:
    """Recompute every hour marked stale by ledger inserts (all tenants, or one), then clear
    exactly the marks that were read; marks added meanwhile wait for the next run."""
    result = RollupResult()
    marks = PendingRollup.objects.all() if tenant is None else PendingRollup.objects.filter(tenant=tenant)
    tenant_ids = sorted(set(marks.values_list("tenant_id", flat=True)))
    tenants = {t.pk: t for t in Tenant.objects.filter(pk__in=tenant_ids)}
    for tenant_id in tenant_ids:
        with transaction.atomic():
            _lock(tenant_id)
            read = list(PendingRollup.objects.filter(tenant_id=tenant_id).values_list("pk", "hour"))
            if not read:
                continue  # another worker took them while we waited for the lock
            _recompute(tenants[tenant_id], {hour for _, hour in read}, result)
            ids = [pk for pk, _ in read]
            for i in range(0, len(ids), 1000):
                PendingRollup.objects.filter(pk__in=ids[i : i + 1000]).delete()
            result.tenants += 1
    return result
