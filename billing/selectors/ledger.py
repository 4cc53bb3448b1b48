"""Ledger reads: the day drill-down (keyset pages), export batches, hours of a day."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from billing.calendar import day_bounds, tenant_tz
from billing.models import DailyUsage, HourlyUsage, UsageEvent
from billing.selectors.common import encode_cursor, time_cursor
from billing.selectors.usage import _daily
from tenants.models import Tenant


# --------------------------------------------------------------------------- the ledger (drill-down, export)
@dataclass(frozen=True, slots=True)
class EventPage:
    events: list[UsageEvent]
    next_cursor: str | None


def _ledger(*, tenant: Tenant, first: date, last: date, api_key_id: int | None, model: str | None) -> QuerySet:
    start, end = day_bounds(tenant, first, last)
    events = UsageEvent.objects.filter(tenant=tenant, created_at__gte=start, created_at__lt=end)
    if api_key_id is not None:
        events = events.filter(api_key_id=api_key_id)
    if model:
        events = events.filter(model=model)
    return events


def usage_event_page(
    *,
    tenant: Tenant,
    first: date,
    last: date,
    api_key_id: int | None = None,
    model: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> EventPage:
    """Ledger rows of the tenant's days ``first``..``last``, newest first, keyset-paginated on
    (created_at, id) — the (tenant, created_at) index serves every page alike."""
    events = _ledger(tenant=tenant, first=first, last=last, api_key_id=api_key_id, model=model)
    after = time_cursor(cursor)
    if after is not None:
        at, pk = after
        events = events.filter(Q(created_at__lt=at) | Q(created_at=at, pk__lt=pk))
    found = list(events.select_related("api_key", "price").order_by("-created_at", "-pk")[: limit + 1])
    more = len(found) > limit
    found = found[:limit]
    next_cursor = encode_cursor([found[-1].created_at.isoformat(), found[-1].pk]) if more else None
    return EventPage(events=found, next_cursor=next_cursor)


def usage_event_batches(
    *, tenant: Tenant, first: date, last: date, api_key_id: int | None = None, batch_size: int = 2000
) -> Iterator[list[UsageEvent]]:
    """The ledger rows of the tenant's days ``first``..``last``, oldest first, in keyset batches
    (an export of any size in constant memory, one short query per batch)."""
    events = _ledger(tenant=tenant, first=first, last=last, api_key_id=api_key_id, model=None).order_by(
        "created_at", "pk"
    )
    after: tuple[datetime, int] | None = None
    while True:
        page = events
        if after is not None:
            page = events.filter(Q(created_at__gt=after[0]) | Q(created_at=after[0], pk__gt=after[1]))
        batch = list(page[:batch_size])
        if not batch:
            return
        yield batch
        after = (batch[-1].created_at, batch[-1].pk)


def daily_usage_batches(
    *, tenant: Tenant, first: date, last: date, api_key_id: int | None = None, batch_size: int = 5000
) -> Iterator[list[DailyUsage]]:
    """The daily rollup rows of ``first``..``last``, by day, in keyset batches."""
    rows = _daily(tenant=tenant, start=first, end=last, api_key_id=api_key_id).order_by("day", "pk")
    after: tuple[date, int] | None = None
    while True:
        page = rows
        if after is not None:
            page = rows.filter(Q(day__gt=after[0]) | Q(day=after[0], pk__gt=after[1]))
        batch = list(page[:batch_size])
        if not batch:
            return
        yield batch
        after = (batch[-1].day, batch[-1].pk)


@dataclass(frozen=True, slots=True)
class HourCost:
    label: str
    requests: int
    cost_micros: int


def usage_by_hour(
    *, tenant: Tenant, day: date, api_key_id: int | None = None, model: str | None = None
) -> list[HourCost]:
    """The tenant's ``day`` hour by hour (hourly rollups; labels in the tenant's time)."""
    start, end = day_bounds(tenant, day, day)
    hours = HourlyUsage.objects.filter(tenant=tenant, hour__gte=start, hour__lt=end)
    if api_key_id is not None:
        hours = hours.filter(api_key_id=api_key_id)
    if model:
        hours = hours.filter(model=model)
    found = {
        row["hour"]: row
        for row in hours.values("hour")
        .annotate(n=Coalesce(Sum("requests"), 0), c=Coalesce(Sum("cost_micros"), 0))
        .order_by()
    }
    tz = tenant_tz(tenant)
    out, hour = [], start
    while hour < end:
        row = found.get(hour, {})
        out.append(HourCost(hour.astimezone(tz).strftime("%H:%M"), int(row.get("n", 0)), int(row.get("c", 0))))
        hour += timedelta(hours=1)
    return out


def ledger_models(*, tenant: Tenant, first: date, last: date) -> list[str]:
    return sorted(set(_daily(tenant=tenant, start=first, end=last).values_list("model", flat=True).distinct()))
