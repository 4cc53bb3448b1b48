"""Tenant calendars: day and month boundaries are the tenant's (``Tenant.timezone``), not UTC."""

from __future__ import annotations

import calendar
import zoneinfo
from datetime import UTC, date, datetime, time, timedelta

from django.utils import timezone

from tenants.models import BudgetPeriod, Tenant


def tenant_tz(tenant: Tenant) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(tenant.timezone or "UTC")


def local_now(tenant: Tenant, now: datetime | None = None) -> datetime:
    return (now or timezone.now()).astimezone(tenant_tz(tenant))


def local_today(tenant: Tenant, now: datetime | None = None) -> date:
    return local_now(tenant, now).date()


def local_midnight(tenant: Tenant, day: date) -> datetime:
    """The instant (UTC) the tenant's ``day`` starts."""
    return datetime.combine(day, time.min, tzinfo=tenant_tz(tenant)).astimezone(UTC)


def day_bounds(tenant: Tenant, first: date, last: date) -> tuple[datetime, datetime]:
    """[start of ``first``, start of the day after ``last``) as UTC instants."""
    return local_midnight(tenant, first), local_midnight(tenant, last + timedelta(days=1))


def local_days_of_hour(tenant: Tenant, hour: datetime) -> set[date]:
    """The tenant's days an UTC hour overlaps (two for zones with a half-hour offset)."""
    tz = tenant_tz(tenant)
    return {hour.astimezone(tz).date(), (hour + timedelta(hours=1) - timedelta(microseconds=1)).astimezone(tz).date()}


def month_start(day: date) -> date:
    return day.replace(day=1)


def month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def budget_period(
    tenant: Tenant, period: str, *, since: datetime, now: datetime | None = None
) -> tuple[date, date | None]:
    """The current budget period as (first day, last day) in the tenant's calendar; a ``total``
    budget runs from ``since`` (the budget holder's creation) and has no last day."""
    today = local_today(tenant, now)
    if period == BudgetPeriod.DAY:
        return today, today
    if period == BudgetPeriod.MONTH:
        return month_start(today), month_end(today)
    return local_today(tenant, since), None
