"""Security events raised on the gateway path, recorded through ``audit.record`` off the hot path.

Never includes the presented secret: only its public id (when well-formed), the reason and the
client's address.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import sync_to_async

from audit.services import RequestMeta, record
from sentinel_site.db import released
from tenants import keys
from tenants.models import ApiKey

log = logging.getLogger(__name__)
_pending: set[asyncio.Task] = set()


def _record_auth_failure(public_id: str | None, reason: str, meta: RequestMeta) -> None:
    key = ApiKey.objects.select_related("tenant").filter(public_id=public_id).first() if public_id else None
    record(
        tenant=key.tenant if key else None,
        action="auth.failed",
        actor=None,
        target=key,
        metadata={"reason": reason, "public_id": public_id or ""},
        meta=meta,
    )


def _presented_token(request: Any) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key", "")


def schedule(func, *args: Any) -> None:
    """Run a sync recorder in a worker thread without making the response wait for it."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        func(*args)
        return
    task = loop.create_task(sync_to_async(released(func), thread_sensitive=False)(*args))
    _pending.add(task)
    task.add_done_callback(_done)


def _done(task: asyncio.Task) -> None:
    _pending.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("security event not recorded", exc_info=task.exception())


def auth_failed(request: Any, *, reason: str) -> None:
    public_id = keys.parse(_presented_token(request))
    schedule(_record_auth_failure, public_id, reason, RequestMeta.from_request(request))


def _record_guardrail(tenant_id: int, key_id: int, detector: str, action: str, meta: RequestMeta) -> None:
    key = ApiKey.objects.select_related("tenant").get(tenant_id=tenant_id, pk=key_id)
    record(
        tenant=key.tenant,
        action=f"guardrail.{ {'block': 'blocked', 'flag': 'flagged', 'redact': 'redacted'}.get(action, action) }",
        actor=key,
        metadata={"detector": detector, "policy": action},
        meta=meta,
    )


def guardrail_triggered(request: Any, key: ApiKey, *, detector: str, action: str) -> None:
    schedule(_record_guardrail, key.tenant_id, key.pk, detector, action, RequestMeta.from_request(request))
