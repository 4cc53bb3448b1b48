"""Budgets (tenant and per key) in their current period, the burn-down forecast, alert history."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.calendar import budget_period, days, local_midnight, local_today
from billing.models import BudgetAlert, DailyBreakdown
from billing.pricing import micros_to_usd, usd_to_micros
from billing.selectors.common import encode_cursor, time_cursor, usd_float
from billing.selectors.usage import usage_by_day
from tenants.models import ApiKey, BudgetPeriod, Tenant


# --------------------------------------------------------------------------- budgets
@dataclass(frozen=True, slots=True)
class BudgetState:
    scope: str  # BudgetAlert.Scope
    api_key: ApiKey | None
    period: str
    first: date
    last: date | None  # None: a total budget
    budget_micros: int
    spent_micros: int

    @property
    def fraction(self) -> float:
        return self.spent_micros / self.budget_micros if self.budget_micros else 0.0

    @property
    def percent(self) -> int:
        return int(self.fraction * 100)

    @property
    def remaining_micros(self) -> int:
        return self.budget_micros - self.spent_micros

    @property
    def label(self) -> str:
        return self.api_key.name if self.api_key is not None else "Tenant"

    @property
    def period_label(self) -> str:
        return BudgetPeriod(self.period).label

    @property
    def spent_usd(self) -> Decimal:
        return micros_to_usd(self.spent_micros)

    @property
    def budget_usd(self) -> Decimal:
        return micros_to_usd(self.budget_micros)


def budget_states(*, tenant: Tenant, now: datetime | None = None, include_keys: bool = True) -> list[BudgetState]:
    """The tenant budget and every active key budget, with spend in the current period so far
    (from the daily rollups; one query per distinct period start)."""
    now = now or timezone.now()
    budgets: list[tuple[str, ApiKey | None, str, date, date | None, int]] = []
    if tenant.budget_usd is not None:
        first, last = budget_period(tenant, tenant.budget_period, since=tenant.created_at, now=now)
        budgets.append(
            (BudgetAlert.Scope.TENANT, None, tenant.budget_period, first, last, usd_to_micros(tenant.budget_usd))
        )
    if include_keys:
        keys = ApiKey.objects.filter(tenant=tenant, budget_usd__isnull=False, revoked_at__isnull=True).order_by("name")
        for key in keys:
            if key.expires_at is not None and key.expires_at <= now:
                continue
            first, last = budget_period(tenant, key.budget_period, since=key.created_at, now=now)
            budgets.append((BudgetAlert.Scope.KEY, key, key.budget_period, first, last, usd_to_micros(key.budget_usd)))
    today = local_today(tenant, now)
    spent: dict[tuple[str, int | None, date], int] = {}
    for first in {b[3] for b in budgets}:
        rows = DailyBreakdown.objects.filter(tenant=tenant, day__gte=first, day__lte=today)
        total = rows.filter(dimension=DailyBreakdown.TOTAL).aggregate(s=Coalesce(Sum("cost_micros"), 0))["s"]
        spent[("tenant", None, first)] = int(total)
        key_ids = [str(b[1].pk) for b in budgets if b[1] is not None and b[3] == first]
        if key_ids:
            per_key = rows.filter(dimension=DailyBreakdown.KEY, value__in=key_ids).values("value")
            for row in per_key.annotate(s=Sum("cost_micros")).order_by():
                spent[("key", int(row["value"]), first)] = int(row["s"] or 0)
    return [
        BudgetState(
            scope=scope,
            api_key=key,
            period=period,
            first=first,
            last=last,
            budget_micros=budget,
            spent_micros=spent.get(("tenant", None, first) if key is None else ("key", key.pk, first), 0),
        )
        for scope, key, period, first, last, budget in budgets
    ]


@dataclass(frozen=True, slots=True)
class BurnDown:
    state: BudgetState
    today: date
    daily_rate_micros: int | None  # average spend per elapsed day of the period
    forecast_micros: int | None  # projected spend at the period's end at that rate
    exhausted_on: date | None  # the day the budget runs out at that rate (None: it lasts)
    labels: list[str] = field(default_factory=list)
    remaining: list[float | None] = field(default_factory=list)
    projected: list[float | None] = field(default_factory=list)

    @property
    def forecast_fraction(self) -> float | None:
        if self.forecast_micros is None or not self.state.budget_micros:
            return None
        return self.forecast_micros / self.state.budget_micros

    @property
    def forecast_usd(self) -> Decimal | None:
        return None if self.forecast_micros is None else micros_to_usd(self.forecast_micros)

    @property
    def daily_rate_usd(self) -> Decimal | None:
        return None if self.daily_rate_micros is None else micros_to_usd(self.daily_rate_micros)

    def chart(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "series": [
                {"label": "Budget remaining (USD)", "values": self.remaining},
                {"label": "Forecast (USD)", "values": self.projected},
            ],
            "kind": "line",
            "format": "usd",
        }


def budget_burndown(*, tenant: Tenant, now: datetime | None = None) -> BurnDown | None:
    """The tenant budget's burn-down for the current period, with a straight-line forecast: the
    average spend per elapsed day (today counted by the fraction elapsed) carried to the period end."""
    now = now or timezone.now()
    states = budget_states(tenant=tenant, now=now, include_keys=False)
    if not states:
        return None
    state = states[0]
    today = local_today(tenant, now)
    if state.last is None:
        return BurnDown(state=state, today=today, daily_rate_micros=None, forecast_micros=None, exhausted_on=None)
    by_day = {r.day: r.totals.cost_micros for r in usage_by_day(tenant=tenant, start=state.first, end=today)}
    today_fraction = Decimal((now - local_midnight(tenant, today)).total_seconds()) / 86400
    elapsed = Decimal((today - state.first).days) + max(today_fraction, Decimal("0.01"))
    period_days = (state.last - state.first).days + 1
    rate = Decimal(state.spent_micros) / elapsed
    forecast = int(rate * period_days)
    exhausted_on = None
    if state.spent_micros < state.budget_micros and forecast > state.budget_micros:
        exhausted_on = max(today, state.first + timedelta(days=int(Decimal(state.budget_micros) / rate)))
    labels, remaining, projected = [], [], []
    cumulative = 0
    for d in days(state.first, state.last):
        labels.append(d.isoformat())
        if d <= today:
            cumulative += by_day.get(d, 0)
            remaining.append(usd_float(state.budget_micros - cumulative))
        else:
            remaining.append(None)
        if d >= today:
            end_of_day = Decimal((d - state.first).days + 1)
            projected.append(usd_float(state.budget_micros - int(rate * end_of_day)))
        else:
            projected.append(None)
    return BurnDown(
        state=state,
        today=today,
        daily_rate_micros=int(rate),
        forecast_micros=forecast,
        exhausted_on=exhausted_on,
        labels=labels,
        remaining=remaining,
        projected=projected,
    )


def tenants_with_budgets() -> QuerySet[Tenant]:
    """Active tenants with a tenant budget or at least one key budget (the alert checker's scope)."""
    with_key_budgets = ApiKey.objects.filter(budget_usd__isnull=False, revoked_at__isnull=True).values("tenant_id")
    return Tenant.objects.filter(status=Tenant.Status.ACTIVE).filter(
        Q(budget_usd__isnull=False) | Q(pk__in=with_key_budgets)
    )


# --------------------------------------------------------------------------- alerts
@dataclass(frozen=True, slots=True)
class AlertPage:
    alerts: list[BudgetAlert]
    next_cursor: str | None


def budget_alert_page(*, tenant: Tenant, cursor: str | None = None, limit: int = 50) -> AlertPage:
    alerts = BudgetAlert.objects.filter(tenant=tenant)
    after = time_cursor(cursor)
    if after is not None:
        at, pk = after
        alerts = alerts.filter(Q(created_at__lt=at) | Q(created_at=at, pk__lt=pk))
    found = list(alerts.select_related("api_key").order_by("-created_at", "-pk")[: limit + 1])
    more = len(found) > limit
    found = found[:limit]
    next_cursor = encode_cursor([found[-1].created_at.isoformat(), found[-1].pk]) if more else None
    return AlertPage(alerts=found, next_cursor=next_cursor)


def budget_alert_get(*, tenant: Tenant, alert_id: int) -> BudgetAlert:
    return BudgetAlert.objects.select_related("tenant", "api_key").get(tenant=tenant, pk=alert_id)
