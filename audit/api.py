"""``/v1/audit``: a key with the ``audit:read`` scope reads its own tenant's audit log."""

from __future__ import annotations

from datetime import UTC, datetime

from asgiref.sync import sync_to_async
from django.http import Http404, HttpRequest
from django.utils import timezone
from ninja import Query, Router

from audit import selectors
from audit.errors import InvalidCursor
from audit.models import AuditEvent
from audit.schemas import AuditEventOut, AuditListOut, AuditQuery
from gateway.errors import InvalidRequest, PermissionDenied
from tenants.models import ApiKey

router = Router(tags=["audit"])


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and timezone.is_naive(moment):
        return moment.replace(tzinfo=UTC)  # a time without an offset is UTC
    return moment


def _reader(request: HttpRequest) -> ApiKey:
    key: ApiKey = request.auth
    if ApiKey.Scope.AUDIT_READ not in (key.scopes or []):
        raise PermissionDenied("This API key lacks the 'audit:read' scope.", code="missing_scope")
    return key


@router.get("", response=AuditListOut, url_name="audit_events")
async def list_audit_events(request: HttpRequest, params: Query[AuditQuery]) -> dict:
    key = _reader(request)
    filters = selectors.AuditFilters(
        action=params.action or "",
        actor=params.actor or "",
        target=params.target or "",
        since=_aware(params.since),
        until=_aware(params.until),
        q=params.q or "",
    )
    try:
        page = await sync_to_async(selectors.audit_event_search)(
            tenant=key.tenant, filters=filters, cursor=params.cursor, limit=params.limit
        )
    except InvalidCursor as exc:
        raise InvalidRequest(str(exc), param="cursor", code="invalid_cursor") from None
    return {"data": page.items, "has_more": page.has_more, "next_cursor": page.next_cursor}


@router.get("/{event_id}", response=AuditEventOut, url_name="audit_event")
async def get_audit_event(request: HttpRequest, event_id: int) -> AuditEvent:
    key = _reader(request)
    try:
        return await sync_to_async(selectors.audit_event_get)(tenant=key.tenant, event_id=event_id)
    except AuditEvent.DoesNotExist:
        raise Http404("No such audit event") from None
