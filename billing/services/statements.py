"""Monthly statements: frozen once the tenant's month is over (plus a grace period for usage still
in the spool), never recomputed afterwards."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from audit.services import record
from billing.calendar import add_months, local_midnight, local_today, month_end
from billing.errors import StatementNotDue
from billing.models import DailyUsage, MonthlyStatement
from billing.selectors import statement_compute
from billing.services.rollups import _lock, usage_rollup_pending
from tenants.models import Tenant

# The spool drains within seconds; two hours covers a worker outage before a month is frozen.
STATEMENT_CLOSE_GRACE = timedelta(hours=2)


def statement_close(*, tenant: Tenant, month: date, now: datetime | None = None) -> MonthlyStatement:
    """Freeze the statement of ``month`` (idempotent: an existing statement is returned as is).

    Raises :class:`StatementNotDue` before the month's end + ``STATEMENT_CLOSE_GRACE``."""
    now = now or timezone.now()
    first = month.replace(day=1)
    last = month_end(first)
    if now < local_midnight(tenant, last + timedelta(days=1)) + STATEMENT_CLOSE_GRACE:
        raise StatementNotDue(f"{first:%Y-%m} closes {STATEMENT_CLOSE_GRACE} after it ends in {tenant.timezone}")
    usage_rollup_pending(tenant=tenant)  # late events of the month are in the rollups first
    with transaction.atomic():
        _lock(tenant.pk)
        existing = MonthlyStatement.objects.filter(tenant=tenant, month=first).first()
        if existing is not None:
            return existing
        view = statement_compute(tenant=tenant, month=first)
        statement = MonthlyStatement.objects.create(
            tenant=tenant,
            month=first,
            time_zone=tenant.timezone,
            period_start=local_midnight(tenant, first),
            period_end=local_midnight(tenant, last + timedelta(days=1)),
            lines=[line.as_json() for line in view.lines],
            keys=[line.as_json() for line in view.keys],
            closed_at=now,
            computed_at=now,
            **view.totals.as_dict(),
        )
        record(
            tenant=tenant,
            action="statement.closed",
            actor=None,
            target=statement,
            after={"month": f"{first:%Y-%m}", "cost_micros": statement.cost_micros, "requests": statement.requests},
        )
    return statement


def statements_close_due(*, now: datetime | None = None) -> list[MonthlyStatement]:
    """Close every month that is due, for every tenant with usage in it (beat: hourly)."""
    now = now or timezone.now()
    closed = []
    tenant_ids = DailyUsage.objects.values_list("tenant_id", flat=True).distinct().order_by()
    for tenant in Tenant.objects.filter(pk__in=tenant_ids):
        due_before = local_today(tenant, now - STATEMENT_CLOSE_GRACE).replace(day=1)
        latest = (
            MonthlyStatement.objects.filter(tenant=tenant).order_by("-month").values_list("month", flat=True).first()
        )
        since = add_months(latest, 1) if latest else date.min
        months = DailyUsage.objects.filter(tenant=tenant, day__gte=since, day__lt=due_before).dates("day", "month")
        for month in months:
            closed.append(statement_close(tenant=tenant, month=month, now=now))
    return closed
