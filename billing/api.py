"""``/v1/usage``: a key reads its tenant's usage (scope ``usage:read``) or else its own."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from ninja import Query, Router
from ninja.errors import HttpError

from billing.calendar import local_today
from billing.schemas import UsageOut, UsageQuery
from billing.selectors import MAX_REPORT_DAYS, CostRow, GroupBy, Totals, UsageReport, usage_report
from tenants.models import ApiKey

router = Router(tags=["usage"])


def _totals(totals: Totals) -> dict[str, Any]:
    return {**totals.as_dict(), "total_tokens": totals.total_tokens, "cost_usd": str(totals.cost_usd)}


def _row(report: UsageReport, row: CostRow) -> dict[str, Any]:
    out = _totals(row.totals)
    if report.group_by == GroupBy.DAY:
        out["day"] = row.day
    elif report.group_by == GroupBy.MODEL:
        out["model"] = row.group
    elif report.group_by == GroupBy.KEY:
        out["key_id"], out["key_name"] = (row.group, row.label) if row.group else (None, None)
    else:
        out["tag_value"] = row.group or None
    return out


@router.get("", response=UsageOut, url_name="usage")
async def get_usage(request: HttpRequest, params: Query[UsageQuery]) -> dict[str, Any]:
    key: ApiKey = request.auth
    end = params.end or local_today(key.tenant)
    start = params.start or end - timedelta(days=29)
    if start > end or (end - start).days >= MAX_REPORT_DAYS:
        raise HttpError(400, f"start must be on or before end, at most {MAX_REPORT_DAYS} days apart")
    if params.group_by == "tag" and not params.tag_key:
        raise HttpError(400, "group_by=tag needs tag_key (e.g. tag_key=project)")
    tenant_wide = ApiKey.Scope.USAGE_READ in (key.scopes or [])
    report = await sync_to_async(usage_report)(
        tenant=key.tenant,
        start=start,
        end=end,
        group_by=GroupBy(params.group_by),
        tag_key=params.tag_key,
        api_key_id=None if tenant_wide else key.pk,
    )
    return {
        "start": start,
        "end": end,
        "timezone": key.tenant.timezone,
        "group_by": params.group_by,
        "tag_key": params.tag_key,
        "scope": "tenant" if tenant_wide else "key",
        "data": [_row(report, row) for row in report.rows],
        "total": _totals(report.totals),
    }
