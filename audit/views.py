"""Audit console: search (HTMX live filtering, keyset pages), event detail with the before/after
diff, request-log search, and streamed CSV / JSON Lines exports. Owners and admins; finance
read-only (every view here only reads, except that an export records ``export.downloaded``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from audit import exports, selectors
from audit.errors import InvalidCursor
from audit.forms import AuditExportForm, AuditSearchForm, RequestLogExportForm, RequestLogSearchForm
from audit.models import AuditEvent, RequestLog
from audit.services import export_recorded
from tenants.decorators import READ_AUDIT, tenant_required
from tenants.models import Membership, Tenant


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails
    tenant: Tenant
    membership: Membership


ALERT_ACTIONS = frozenset({"auth.failed", "login.failed", "guardrail.blocked", "api_key.revoked", "member.removed"})


def _query(form: AuditSearchForm | RequestLogSearchForm) -> str:
    """The submitted filters as a query string (for "next page" links), cursor excluded."""
    return urlencode([(name, form.data.get(name, "")) for name in form.fields if form.data.get(name)])


def _search_context(
    request: HtmxHttpRequest, form: AuditSearchForm | RequestLogSearchForm, search, filters_of
) -> dict[str, Any]:
    page, error = None, ""
    if form.is_valid():
        try:
            page = search(tenant=request.tenant, filters=filters_of(form), cursor=request.GET.get("cursor") or None)
        except InvalidCursor as exc:
            error = str(exc)
    return {
        "tenant": request.tenant,
        "form": form,
        "page": page,
        "error": error,
        "query": _query(form),
        "paged": bool(request.GET.get("cursor")),
    }


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    response["Vary"] = "HX-Request"
    return response


# --------------------------------------------------------------------------- audit events
@tenant_required(READ_AUDIT)
@require_GET
def events(request: HtmxHttpRequest) -> HttpResponse:
    form = AuditSearchForm(request.GET, tz_name=request.tenant.timezone)
    context = _search_context(request, form, selectors.audit_event_search, AuditSearchForm.filters)
    context["alert_actions"] = ALERT_ACTIONS
    page = "audit/events.html"
    return _no_store(render(request, f"{page}#audit-results" if request.htmx else page, context))


@tenant_required(READ_AUDIT)
@require_GET
def event_detail(request: HtmxHttpRequest, event_id: int) -> HttpResponse:
    try:
        event = selectors.audit_event_get(tenant=request.tenant, event_id=event_id)
    except AuditEvent.DoesNotExist:
        raise Http404("No such audit event") from None
    context = {"tenant": request.tenant, "event": event, "diff": selectors.audit_event_diff(event)}
    return _no_store(render(request, "audit/event_detail.html", context))


def _export_response(
    request: HtmxHttpRequest, *, kind: str, fmt: str, filters, batches_after, columns, to_record
) -> StreamingHttpResponse:
    """Record ``export.downloaded``, then stream what ``batches_after(that event)`` yields."""
    event = export_recorded(
        tenant=request.tenant, actor=request.user, kind=kind, fmt=fmt, filters=filters.as_params(), request=request
    )
    chunks = exports.export_chunks(fmt, batches_after(event), columns, to_record)
    response = StreamingHttpResponse(exports.aiter_bytes(chunks), content_type=exports.CONTENT_TYPES[fmt])
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    name = f"{request.tenant.slug}-{kind.replace('.', '-')}-{stamp}.{fmt}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response


def _bad_export(form) -> HttpResponse:
    errors = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in form.errors.items())
    return HttpResponse(f"Invalid export request: {errors}", status=400, content_type="text/plain; charset=utf-8")


@tenant_required(READ_AUDIT)
@require_POST
def events_export(request: HtmxHttpRequest) -> HttpResponse:
    form = AuditExportForm(request.POST, tz_name=request.tenant.timezone)
    if not form.is_valid():
        return _bad_export(form)
    filters = form.filters()
    return _export_response(
        request,
        kind="audit.events",
        fmt=form.cleaned_data["format"],
        filters=filters,
        # the events as they were when the export was asked for: not its own event, nor later ones
        batches_after=lambda event: selectors.audit_event_batches(
            tenant=request.tenant, filters=filters, before_seq=event.seq
        ),
        columns=exports.AUDIT_COLUMNS,
        to_record=exports.audit_event_record,
    )


# --------------------------------------------------------------------------- request log
@tenant_required(READ_AUDIT)
@require_GET
def requests(request: HtmxHttpRequest) -> HttpResponse:
    form = RequestLogSearchForm(request.GET, tz_name=request.tenant.timezone)
    context = _search_context(request, form, selectors.request_log_search, RequestLogSearchForm.filters)
    page = "audit/requests.html"
    return _no_store(render(request, f"{page}#request-results" if request.htmx else page, context))


@tenant_required(READ_AUDIT)
@require_GET
def request_detail(request: HtmxHttpRequest, request_id: str) -> HttpResponse:
    try:
        row = selectors.request_log_get(tenant=request.tenant, request_id=request_id)
    except RequestLog.DoesNotExist:
        raise Http404("No such request") from None
    return _no_store(render(request, "audit/request_detail.html", {"tenant": request.tenant, "row": row}))


@tenant_required(READ_AUDIT)
@require_POST
def requests_export(request: HtmxHttpRequest) -> HttpResponse:
    form = RequestLogExportForm(request.POST, tz_name=request.tenant.timezone)
    if not form.is_valid():
        return _bad_export(form)
    filters = form.filters()
    return _export_response(
        request,
        kind="audit.request_log",
        fmt=form.cleaned_data["format"],
        filters=filters,
        batches_after=lambda event: selectors.request_log_batches(tenant=request.tenant, filters=filters),
        columns=exports.REQUEST_COLUMNS,
        to_record=exports.request_log_record,
    )
