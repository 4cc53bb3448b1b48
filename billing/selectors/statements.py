"""Monthly statements: the frozen ones, and the live preview of an open month."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db.models import Count, Sum
from django.db.models.functions import Coalesce, TruncMonth

from billing.calendar import add_months, local_today, month_end
from billing.models import DailyBreakdown, MonthlyStatement, Price
from billing.pricing import micros_to_usd
from billing.selectors.common import SUMS, TOTAL_FIELDS, GroupBy, Totals
from billing.selectors.usage import _daily, usage_grouped, usage_totals
from tenants.models import Tenant


# --------------------------------------------------------------------------- statements
@dataclass(frozen=True, slots=True)
class StatementLine:
    model: str
    price_id: int | None
    input_per_mtok: Decimal | None
    cached_input_per_mtok: Decimal | None
    output_per_mtok: Decimal | None
    price_effective_from: str
    adjustment_percent: Decimal
    totals: Totals

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "price_id": self.price_id,
            "input_per_mtok": None if self.input_per_mtok is None else str(self.input_per_mtok),
            "cached_input_per_mtok": None if self.cached_input_per_mtok is None else str(self.cached_input_per_mtok),
            "output_per_mtok": None if self.output_per_mtok is None else str(self.output_per_mtok),
            "price_effective_from": self.price_effective_from,
            "adjustment_percent": str(self.adjustment_percent),
            **self.totals.as_dict(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StatementLine:
        def dec(name: str) -> Decimal | None:
            return None if data.get(name) is None else Decimal(data[name])

        return cls(
            model=data["model"],
            price_id=data["price_id"],
            input_per_mtok=dec("input_per_mtok"),
            cached_input_per_mtok=dec("cached_input_per_mtok"),
            output_per_mtok=dec("output_per_mtok"),
            price_effective_from=data["price_effective_from"],
            adjustment_percent=Decimal(data["adjustment_percent"]),
            totals=Totals.from_row(data, prefix=""),
        )


@dataclass(frozen=True, slots=True)
class StatementKeyLine:
    key_id: str  # public id ("" = no key)
    name: str
    totals: Totals

    def as_json(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "name": self.name, **self.totals.as_dict()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StatementKeyLine:
        return cls(key_id=data["key_id"], name=data["name"], totals=Totals.from_row(data, prefix=""))


@dataclass(frozen=True, slots=True)
class StatementView:
    tenant_name: str
    month: date
    last_day: date
    time_zone: str
    lines: list[StatementLine]
    keys: list[StatementKeyLine]
    totals: Totals
    closed_at: datetime | None
    late_micros: int = 0  # usage recorded for the month after it closed (not on this statement)

    @property
    def is_closed(self) -> bool:
        return self.closed_at is not None


def statement_compute(*, tenant: Tenant, month: date) -> StatementView:
    """The month's statement as the rollups stand now (an open month's preview; the close
    service freezes exactly this)."""
    first, last = month.replace(day=1), month_end(month)
    rows = _daily(tenant=tenant, start=first, end=last)
    by_price = list(
        rows.values("model", "price_id", "adjustment_percent").annotate(**SUMS).order_by("model", "price_id")
    )
    prices = Price.objects.in_bulk([r["price_id"] for r in by_price if r["price_id"]])
    lines = []
    for r in by_price:
        price = prices.get(r["price_id"])
        lines.append(
            StatementLine(
                model=r["model"],
                price_id=r["price_id"],
                input_per_mtok=price.input_per_mtok if price else None,
                cached_input_per_mtok=price.cached_input_per_mtok if price else None,
                output_per_mtok=price.output_per_mtok if price else None,
                price_effective_from=price.effective_from.date().isoformat() if price else "",
                adjustment_percent=r["adjustment_percent"],
                totals=Totals.from_row(r),
            )
        )
    page = usage_grouped(tenant=tenant, start=first, end=last, group_by=GroupBy.KEY)
    keys = [StatementKeyLine(key_id=r.group, name=r.label, totals=r.totals) for r in page.rows]
    totals = Totals.sum([line.totals for line in lines])
    return StatementView(
        tenant_name=tenant.name,
        month=first,
        last_day=last,
        time_zone=tenant.timezone,
        lines=lines,
        keys=keys,
        totals=totals,
        closed_at=None,
    )


def statement_get(*, tenant: Tenant, month: date) -> StatementView:
    """The frozen statement of a closed month, else the live preview."""
    frozen = MonthlyStatement.objects.filter(tenant=tenant, month=month.replace(day=1)).first()
    if frozen is None:
        return statement_compute(tenant=tenant, month=month)
    now_total = usage_totals(tenant=tenant, start=frozen.month, end=month_end(frozen.month))
    return StatementView(
        tenant_name=tenant.name,
        month=frozen.month,
        last_day=month_end(frozen.month),
        time_zone=frozen.time_zone,
        lines=[StatementLine.from_json(line) for line in frozen.lines],
        keys=[StatementKeyLine.from_json(line) for line in frozen.keys],
        totals=Totals.from_row({name: getattr(frozen, name) for name in TOTAL_FIELDS}, prefix=""),
        closed_at=frozen.closed_at,
        late_micros=now_total.cost_micros - frozen.cost_micros,
    )


@dataclass(frozen=True, slots=True)
class StatementMonth:
    month: date
    cost_micros: int
    closed: bool

    @property
    def cost_usd(self) -> Decimal:
        return micros_to_usd(self.cost_micros)


def statement_months(*, tenant: Tenant, now: datetime | None = None, limit: int = 24) -> list[StatementMonth]:
    """Months with usage (newest first): closed ones with their frozen total, open ones live."""
    this_month = local_today(tenant, now).replace(day=1)
    since = add_months(this_month, -limit)
    closed = {s.month: s.cost_micros for s in MonthlyStatement.objects.filter(tenant=tenant, month__gte=since)}
    live = {
        row["m"]: int(row["c"])
        for row in DailyBreakdown.objects.filter(tenant=tenant, dimension=DailyBreakdown.TOTAL, day__gte=since)
        .annotate(m=TruncMonth("day"))
        .values("m")
        .annotate(c=Coalesce(Sum("cost_micros"), 0), n=Count("pk"))
        .order_by()
    }
    months = sorted(set(closed) | set(live), reverse=True)[:limit]
    if this_month not in months:
        months = [this_month, *months][:limit]
    return [StatementMonth(m, closed.get(m, live.get(m, 0)), m in closed) for m in months]
