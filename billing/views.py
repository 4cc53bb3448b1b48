"""Cost pages, exports, statements and the alert history. Thin: parse, call a selector, render.

Every view is ``tenant_required(READ_COSTS)`` (owner, admin, finance); ids in URLs and query
strings are looked up with the tenant, so another tenant's ids give 404.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date, timedelta

from django.core.exceptions import ObjectDoesNotExist
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from audit.services import export_recorded
from billing import selectors
from billing.calendar import local_today, month_end
from billing.csv_export import csv_lines, csv_response
from billing.errors import BillingError, InvalidRange
from billing.forms import CostTableForm, CursorForm, DrillDownForm, ExportForm, RangeForm, range_presets
from billing.selectors import GroupBy
from billing.services import alert_thresholds
from tenants.decorators import READ_COSTS, tenant_required
from tenants.models import ApiKey

TABLE_PAGE = 25
EVENT_PAGE = 50


def _errors_mapped(view: Callable) -> Callable:
    """Not found (or another tenant's) -> 404; a billing error (bad input) -> 400 with its message."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except ObjectDoesNotExist:
            raise Http404("Not found") from None
        except BillingError as exc:
            return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")

    return wrapper


def _key_or_404(request: HttpRequest, key_id: int | None) -> ApiKey | None:
    return None if key_id is None else selectors.api_key_get(tenant=request.tenant, key_id=key_id)


def _htmx_aware(response: HttpResponse) -> HttpResponse:
    patch_vary_headers(response, ["HX-Request"])
    return response


# --------------------------------------------------------------------------- pages
@require_GET
@tenant_required(READ_COSTS)
def costs(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant
    today = local_today(tenant)
    form = CostTableForm(request.GET, today=today)
    start, end = form.range()
    tags = selectors.tag_keys(tenant=tenant, start=start, end=end)
    group = form.option("group", GroupBy.MODEL)
    tag = form.option("tag", "") or (tags[0] if tags else None)
    if group == GroupBy.TAG and not tag:
        group = GroupBy.MODEL
    context = {
        "tenant": tenant,
        "form": form,
        "start": start,
        "end": end,
        "group": group,
        "groups": list(GroupBy),
        "tag": tag,
        "tags": tags,
        "cursor": form.option("cursor", ""),
        "table": selectors.usage_grouped(
            tenant=tenant,
            start=start,
            end=end,
            group_by=group,
            tag_key=tag,
            cursor=form.option("cursor", ""),
            limit=TABLE_PAGE,
        ),
    }
    if request.htmx:
        context["totals"] = selectors.usage_totals(tenant=tenant, start=start, end=end)
        return _htmx_aware(render(request, "billing/costs.html#cost-table", context))
    overview = selectors.cost_overview(tenant=tenant, start=start, end=end, compare=form.option("compare", True))
    context |= {
        "overview": overview,
        "totals": overview.totals,
        "burndown": selectors.budget_burndown(tenant=tenant),
        "key_budgets": [b for b in selectors.budget_states(tenant=tenant) if b.api_key is not None],
        "presets": range_presets(today),
    }
    return _htmx_aware(render(request, "billing/costs.html", context))


@require_GET
@tenant_required(READ_COSTS)
@_errors_mapped
def costs_day(request: HttpRequest, day: date) -> HttpResponse:
    tenant = request.tenant
    form = DrillDownForm(request.GET)
    key = _key_or_404(request, form.option("key"))
    key_id, model = (key.pk if key else None), form.option("model")
    page = selectors.usage_event_page(
        tenant=tenant,
        first=day,
        last=day,
        api_key_id=key_id,
        model=model,
        cursor=form.option("cursor"),
        limit=EVENT_PAGE,
    )
    context = {"tenant": tenant, "day": day, "key": key, "model": model, "page": page}
    if request.htmx:
        return _htmx_aware(render(request, "billing/costs_day.html#request-table", context))
    hours = selectors.usage_by_hour(tenant=tenant, day=day, api_key_id=key_id, model=model)
    context |= {
        "totals": selectors.usage_totals(tenant=tenant, start=day, end=day, api_key_id=key_id, model=model),
        "hours": hours,
        "chart": {
            "labels": [h.label for h in hours],
            "series": [{"label": "Spend (USD)", "values": [h.cost_micros / 1_000_000 for h in hours]}],
            "kind": "bar",
            "format": "usd",
        },
        "keys": sorted(selectors.api_key_labels(tenant=tenant).values(), key=lambda k: k.name.lower()),
        "models": selectors.ledger_models(tenant=tenant, first=day, last=day),
        "previous_day": day - timedelta(days=1),
        "next_day": day + timedelta(days=1) if day < local_today(tenant) else None,
    }
    return _htmx_aware(render(request, "billing/costs_day.html", context))


@require_GET
@tenant_required(READ_COSTS)
@_errors_mapped
def costs_key(request: HttpRequest, key_id: int) -> HttpResponse:
    tenant = request.tenant
    key = selectors.api_key_get(tenant=tenant, key_id=key_id)
    today = local_today(tenant)
    form = RangeForm(request.GET, today=today)
    start, end = form.range()
    by_day = selectors.usage_by_day(tenant=tenant, start=start, end=end, api_key_id=key.pk)
    return render(
        request,
        "billing/costs_key.html",
        {
            "tenant": tenant,
            "key": key,
            "form": form,
            "start": start,
            "end": end,
            "presets": range_presets(today),
            "totals": selectors.usage_totals(tenant=tenant, start=start, end=end, api_key_id=key.pk),
            "by_day": list(reversed(by_day)),
            "chart": {
                "labels": [r.group for r in by_day],
                "series": [{"label": "Spend (USD)", "values": [r.totals.cost_micros / 1_000_000 for r in by_day]}],
                "kind": "line",
                "format": "usd",
            },
            "by_model": selectors.usage_grouped(
                tenant=tenant, start=start, end=end, group_by=GroupBy.MODEL, api_key_id=key.pk
            ).rows,
            "budget": next((b for b in selectors.budget_states(tenant=tenant) if b.api_key == key), None),
        },
    )


@require_GET
@tenant_required(READ_COSTS)
def alerts(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant
    page = selectors.budget_alert_page(tenant=tenant, cursor=CursorForm(request.GET).option("cursor"))
    context = {"tenant": tenant, "page": page}
    if request.htmx:
        return _htmx_aware(render(request, "billing/alerts.html#alert-table", context))
    context |= {"budgets": selectors.budget_states(tenant=tenant), "thresholds": alert_thresholds(tenant)}
    return _htmx_aware(render(request, "billing/alerts.html", context))


@require_GET
@tenant_required(READ_COSTS)
def statements(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant
    return render(
        request, "billing/statements.html", {"tenant": tenant, "months": selectors.statement_months(tenant=tenant)}
    )


@require_GET
@tenant_required(READ_COSTS)
def statement(request: HttpRequest, year: int, month: int) -> HttpResponse:
    tenant = request.tenant
    if not (1 <= month <= 12 and 2000 <= year <= 2999):
        raise Http404("No such month")
    first = date(year, month, 1)
    export_recorded(
        tenant=tenant,
        actor=request.user,
        kind="billing.statement",
        fmt="html",
        filters={"month": f"{first:%Y-%m}"},
        request=request,
    )
    view = selectors.statement_get(tenant=tenant, month=first)
    return render(request, "billing/statement.html", {"tenant": tenant, "statement": view, "last": month_end(first)})


# --------------------------------------------------------------------------- exports
LEDGER_HEADER = [
    "request_id",
    "created_at_utc",
    "key_id",
    "key_name",
    "model",
    "provider",
    "route",
    "endpoint",
    "status",
    "http_status",
    "attempts",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cost_micros",
    "cost_usd",
    "price_id",
    "adjustment_percent",
    "estimated",
    "cache_hit",
    "stream",
    "latency_ms",
    "ttft_ms",
    "tags",
]
ROLLUP_HEADER = [
    "day",
    "key_id",
    "key_name",
    "model",
    "price_id",
    "adjustment_percent",
    "tags",
    "requests",
    "error_requests",
    "cache_hits",
    "estimated_requests",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cost_micros",
    "cost_usd",
]


def _export_form(request: HttpRequest) -> tuple[ExportForm, date, date, ApiKey | None]:
    form = ExportForm(request.GET, today=local_today(request.tenant))
    if not form.is_valid():
        raise InvalidRange("; ".join(e for errors in form.errors.values() for e in errors))
    return form, form.cleaned_data["start"], form.cleaned_data["end"], _key_or_404(request, form.cleaned_data["key"])


def _key_cells(keys: dict[int, ApiKey], key_id: int | None) -> list[str]:
    key = keys.get(key_id) if key_id else None
    return [key.public_id, key.name] if key else ["", ""]


@require_GET
@tenant_required(READ_COSTS)
@_errors_mapped
def export_usage_csv(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant
    _, start, end, key = _export_form(request)
    filters = {"start": start.isoformat(), "end": end.isoformat(), "key": key.public_id if key else None}
    export_recorded(
        tenant=tenant, actor=request.user, kind="billing.usage_event", fmt="csv", filters=filters, request=request
    )
    keys = selectors.api_key_labels(tenant=tenant)

    def row(e) -> list:
        return [
            e.request_id,
            e.created_at.isoformat(),
            *_key_cells(keys, e.api_key_id),
            e.model,
            e.provider,
            e.route,
            e.endpoint,
            e.status,
            e.http_status,
            e.attempts,
            e.prompt_tokens,
            e.cached_tokens,
            e.completion_tokens,
            e.reasoning_tokens,
            e.cost_micros,
            e.cost_usd.quantize(selectors.MICRO_USD),
            e.price_id or "",
            e.adjustment_percent,
            int(e.estimated),
            int(e.cache_hit),
            int(e.stream),
            e.latency_ms,
            "" if e.ttft_ms is None else e.ttft_ms,
            selectors.tags_json(e.tags),
        ]

    batches = selectors.usage_event_batches(tenant=tenant, first=start, last=end, api_key_id=key.pk if key else None)
    name = f"{tenant.slug}-requests-{start:%Y%m%d}-{end:%Y%m%d}.csv"
    return csv_response(request, name, csv_lines(LEDGER_HEADER, batches, row))


@require_GET
@tenant_required(READ_COSTS)
@_errors_mapped
def export_rollup_csv(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant
    _, start, end, key = _export_form(request)
    filters = {"start": start.isoformat(), "end": end.isoformat(), "key": key.public_id if key else None}
    export_recorded(
        tenant=tenant, actor=request.user, kind="billing.daily_usage", fmt="csv", filters=filters, request=request
    )
    keys = selectors.api_key_labels(tenant=tenant)

    def row(r) -> list:
        return [
            r.day.isoformat(),
            *_key_cells(keys, r.api_key_id),
            r.model,
            r.price_id or "",
            r.adjustment_percent,
            selectors.tags_json(r.tags),
            r.requests,
            r.error_requests,
            r.cache_hits,
            r.estimated_requests,
            r.prompt_tokens,
            r.cached_tokens,
            r.completion_tokens,
            r.reasoning_tokens,
            r.cost_micros,
            r.cost_usd.quantize(selectors.MICRO_USD),
        ]

    batches = selectors.daily_usage_batches(tenant=tenant, first=start, last=end, api_key_id=key.pk if key else None)
    name = f"{tenant.slug}-daily-usage-{start:%Y%m%d}-{end:%Y%m%d}.csv"
    return csv_response(request, name, csv_lines(ROLLUP_HEADER, batches, row))
