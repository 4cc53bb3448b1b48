"""Usage over a range of the tenant's days: totals, per day, grouped, the cost page and /v1/usage.

Tenant-wide reads come from ``DailyBreakdown`` (one row per day and dimension value: a year is a
few hundred rows per dimension). Reads restricted to one API key or model come from
``DailyUsage`` through its (tenant, api_key, day) and (tenant, model, day) indexes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django.db.models import F, Q, QuerySet, TextField, Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce

from billing.calendar import days
from billing.models import DailyBreakdown, DailyUsage, PendingRollup
from billing.selectors.common import (
    SUMS,
    TOTAL_FIELDS,
    CostPage,
    CostRow,
    GroupBy,
    Totals,
    api_key_labels,
    cost_cursor,
    day_cursor,
    encode_cursor,
    usd_float,
)
from tenants.models import Tenant

MAX_REPORT_DAYS = 366
_DIMENSION = {GroupBy.MODEL: DailyBreakdown.MODEL, GroupBy.KEY: DailyBreakdown.KEY}


def _daily(
    *, tenant: Tenant, start: date, end: date, api_key_id: int | None = None, model: str | None = None
) -> QuerySet[DailyUsage]:
    rows = DailyUsage.objects.filter(tenant=tenant, day__gte=start, day__lte=end)
    if api_key_id is not None:
        rows = rows.filter(api_key_id=api_key_id)
    if model:
        rows = rows.filter(model=model)
    return rows


def _breakdown(*, tenant: Tenant, start: date, end: date, dimension: str) -> QuerySet[DailyBreakdown]:
    return DailyBreakdown.objects.filter(tenant=tenant, dimension=dimension, day__gte=start, day__lte=end)


def _per_day(
    *, tenant: Tenant, start: date, end: date, api_key_id: int | None = None, model: str | None = None
) -> dict[date, Totals]:
    if api_key_id is None and not model:
        rows = _breakdown(tenant=tenant, start=start, end=end, dimension=DailyBreakdown.TOTAL)
        return {row["day"]: Totals.from_row(row, prefix="") for row in rows.values("day", *TOTAL_FIELDS)}
    rows = _daily(tenant=tenant, start=start, end=end, api_key_id=api_key_id, model=model)
    return {row["day"]: Totals.from_row(row) for row in rows.values("day").annotate(**SUMS).order_by()}


def usage_totals(
    *, tenant: Tenant, start: date, end: date, api_key_id: int | None = None, model: str | None = None
) -> Totals:
    return Totals.sum(list(_per_day(tenant=tenant, start=start, end=end, api_key_id=api_key_id, model=model).values()))


def usage_by_day(
    *, tenant: Tenant, start: date, end: date, api_key_id: int | None = None, model: str | None = None
) -> list[CostRow]:
    """Every day of [start, end], oldest first, days without usage included as zeros."""
    found = _per_day(tenant=tenant, start=start, end=end, api_key_id=api_key_id, model=model)
    return [CostRow(d.isoformat(), d.isoformat(), found.get(d, Totals()), day=d) for d in days(start, end)]


def _tag_expression(tag_key: str):
    return Coalesce(KeyTextTransform(tag_key, "tags"), Value(""), output_field=TextField())


def usage_grouped(
    *,
    tenant: Tenant,
    start: date,
    end: date,
    group_by: GroupBy,
    tag_key: str | None = None,
    api_key_id: int | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> CostPage:
    """Usage grouped by day (newest first, days with usage) or by model / key / tag value (highest
    cost first), keyset-paginated: ``cursor`` is the previous page's ``next_cursor``.

    Grouping by tag needs ``tag_key``: each request counts once, under its value for that key or
    as untagged (""), so the groups always add up to the total."""
    group_by = GroupBy(group_by)
    if group_by == GroupBy.TAG and not tag_key:
        raise ValueError("grouping by tag needs a tag key")
    if group_by == GroupBy.DAY:
        return _by_day_page(tenant, start, end, api_key_id, cursor, limit)
    if api_key_id is None and group_by == GroupBy.TAG:
        source = _breakdown(tenant=tenant, start=start, end=end, dimension=DailyBreakdown.TAG_PREFIX + tag_key)
        source = source.annotate(g=F("value"))
    elif api_key_id is None:
        source = _breakdown(tenant=tenant, start=start, end=end, dimension=_DIMENSION[group_by]).annotate(g=F("value"))
    elif group_by == GroupBy.TAG:
        source = _daily(tenant=tenant, start=start, end=end, api_key_id=api_key_id).annotate(g=_tag_expression(tag_key))
    elif group_by == GroupBy.KEY:
        source = _daily(tenant=tenant, start=start, end=end, api_key_id=api_key_id).annotate(g=Value(str(api_key_id)))
    else:
        source = _daily(tenant=tenant, start=start, end=end, api_key_id=api_key_id).annotate(g=F("model"))
    grouped = source.values("g").annotate(**SUMS)
    after = cost_cursor(cursor)
    if after is not None:
        grouped = grouped.filter(Q(s_cost_micros__lt=after[0]) | Q(s_cost_micros=after[0], g__gt=after[1]))
    found = list(
        grouped.order_by("-s_cost_micros", "g")[: limit + 1] if limit else grouped.order_by("-s_cost_micros", "g")
    )
    if api_key_id is None and group_by == GroupBy.TAG:
        found = _with_untagged(tenant, start, end, tag_key, found, after)
    more = limit is not None and len(found) > limit
    found = found[:limit] if limit else found
    next_cursor = encode_cursor([found[-1]["s_cost_micros"], found[-1]["g"]]) if more else None
    return CostPage(
        rows=_labelled(tenant, group_by, found), next_cursor=next_cursor, group_by=group_by, tag_key=tag_key
    )


def _with_untagged(tenant: Tenant, start: date, end: date, tag_key: str, found: list[dict], after) -> list[dict]:
    """Add the "untagged" group (the total minus every tagged group) in its sorted place."""
    tagged = _breakdown(tenant=tenant, start=start, end=end, dimension=DailyBreakdown.TAG_PREFIX + tag_key)
    untagged = usage_totals(tenant=tenant, start=start, end=end) - Totals.from_row(tagged.aggregate(**SUMS))
    if not (untagged.requests or untagged.cost_micros):
        return found
    if after is not None and not untagged.cost_micros < after[0]:
        return found  # shown on an earlier page ("" sorts first among equal costs)
    row = {"g": "", **{f"s_{name}": value for name, value in untagged.as_dict().items()}}
    return sorted([*found, row], key=lambda r: (-r["s_cost_micros"], r["g"]))


def _by_day_page(tenant, start, end, api_key_id, cursor, limit) -> CostPage:
    per_day = _per_day(tenant=tenant, start=start, end=end, api_key_id=api_key_id)
    ordered = sorted((d for d, t in per_day.items() if t.requests or t.cost_micros), reverse=True)
    after = day_cursor(cursor)
    if after is not None:
        ordered = [d for d in ordered if d < after]
    page = ordered[:limit] if limit else ordered
    next_cursor = encode_cursor([page[-1].isoformat()]) if limit and len(ordered) > limit else None
    rows = [CostRow(d.isoformat(), d.isoformat(), per_day[d], day=d) for d in page]
    return CostPage(rows=rows, next_cursor=next_cursor, group_by=GroupBy.DAY)


def _labelled(tenant: Tenant, group_by: GroupBy, found: list[dict]) -> list[CostRow]:
    if group_by == GroupBy.MODEL:
        return [CostRow(r["g"], r["g"], Totals.from_row(r)) for r in found]
    if group_by == GroupBy.TAG:
        return [CostRow(r["g"], r["g"] or "(untagged)", Totals.from_row(r)) for r in found]
    keys = api_key_labels(tenant=tenant, ids=[int(r["g"]) for r in found if r["g"]])
    out = []
    for r in found:
        key = keys.get(int(r["g"])) if r["g"] else None
        if key is None:
            out.append(CostRow("", "No key", Totals.from_row(r)))
        else:
            out.append(CostRow(key.public_id, key.name, Totals.from_row(r), api_key_id=key.pk))
    return out


def tag_keys(*, tenant: Tenant, start: date, end: date) -> list[str]:
    """Tag keys used in [start, end] (for the "by tag" selector)."""
    prefix = DailyBreakdown.TAG_PREFIX
    # a range on the (tenant, dimension, ...) index rather than LIKE, which it cannot serve
    dimensions = DailyBreakdown.objects.filter(
        tenant=tenant, dimension__gte=prefix, dimension__lt=prefix[:-1] + chr(ord(prefix[-1]) + 1)
    ).filter(day__gte=start, day__lte=end)
    return sorted({d.removeprefix(prefix) for d in dimensions.values_list("dimension", flat=True).distinct()})


def rollup_backlog(*, tenant: Tenant) -> int:
    """Ledger hours whose rollups are being recomputed (0 = the pages are up to date)."""
    return PendingRollup.objects.filter(tenant=tenant).values("hour").distinct().count()


# --------------------------------------------------------------------------- the cost page
def previous_range(start: date, end: date) -> tuple[date, date]:
    span = (end - start).days + 1
    return start - timedelta(days=span), start - timedelta(days=1)


@dataclass(frozen=True, slots=True)
class CostOverview:
    start: date
    end: date
    totals: Totals
    by_day: list[CostRow]
    previous_start: date
    previous_end: date
    previous_totals: Totals | None
    previous_by_day: list[CostRow] | None
    by_model: list[CostRow]
    top_keys: list[CostRow]
    backlog_hours: int

    @property
    def cost_change(self) -> float | None:
        if self.previous_totals is None or not self.previous_totals.cost_micros:
            return None
        return (self.totals.cost_micros - self.previous_totals.cost_micros) / self.previous_totals.cost_micros

    @property
    def requests_change(self) -> float | None:
        if self.previous_totals is None or not self.previous_totals.requests:
            return None
        return (self.totals.requests - self.previous_totals.requests) / self.previous_totals.requests

    def chart(self) -> dict[str, Any]:
        series = [{"label": "Spend (USD)", "values": [usd_float(r.totals.cost_micros) for r in self.by_day]}]
        if self.previous_by_day is not None:
            previous = [usd_float(r.totals.cost_micros) for r in self.previous_by_day]
            series.append({"label": "Previous period (USD)", "values": previous})
        return {"labels": [r.group for r in self.by_day], "series": series, "kind": "line", "format": "usd"}


def cost_overview(*, tenant: Tenant, start: date, end: date, compare: bool = True, top: int = 5) -> CostOverview:
    """The cost page's summary: one read of the daily totals covers the range and the previous
    period of the same length (compared day by day); then the top models and keys."""
    previous_start, previous_end = previous_range(start, end)
    per_day = _per_day(tenant=tenant, start=previous_start if compare else start, end=end)

    def rows(first: date, last: date) -> list[CostRow]:
        return [CostRow(d.isoformat(), d.isoformat(), per_day.get(d, Totals()), day=d) for d in days(first, last)]

    by_day = rows(start, end)
    previous = rows(previous_start, previous_end) if compare else None
    return CostOverview(
        start=start,
        end=end,
        totals=Totals.sum([r.totals for r in by_day]),
        by_day=by_day,
        previous_start=previous_start,
        previous_end=previous_end,
        previous_totals=Totals.sum([r.totals for r in previous]) if previous is not None else None,
        previous_by_day=previous,
        by_model=usage_grouped(tenant=tenant, start=start, end=end, group_by=GroupBy.MODEL, limit=top).rows,
        top_keys=usage_grouped(tenant=tenant, start=start, end=end, group_by=GroupBy.KEY, limit=top).rows,
        backlog_hours=rollup_backlog(tenant=tenant),
    )


# --------------------------------------------------------------------------- /v1/usage
@dataclass(frozen=True, slots=True)
class UsageReport:
    start: date
    end: date
    group_by: GroupBy
    tag_key: str | None
    rows: list[CostRow]
    totals: Totals


def usage_report(
    *,
    tenant: Tenant,
    start: date,
    end: date,
    group_by: GroupBy,
    tag_key: str | None = None,
    api_key_id: int | None = None,
) -> UsageReport:
    """Usage for [start, end] grouped by day (every day, oldest first) or by model / key / tag
    value (highest cost first); ``api_key_id`` restricts it to one key."""
    group_by = GroupBy(group_by)
    if group_by == GroupBy.DAY:
        rows = usage_by_day(tenant=tenant, start=start, end=end, api_key_id=api_key_id)
    else:
        page = usage_grouped(
            tenant=tenant, start=start, end=end, group_by=group_by, tag_key=tag_key, api_key_id=api_key_id
        )
        rows = page.rows
    return UsageReport(
        start=start, end=end, group_by=group_by, tag_key=tag_key, rows=rows, totals=Totals.sum([r.totals for r in rows])
    )
