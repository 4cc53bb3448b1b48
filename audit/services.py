"""The audit log's one entry point, :func:`record`, and chain verification.

Every admin mutation and security event calls ``record(...)`` inside the transaction of the change
it describes, so the event and the change commit or roll back together.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from audit.models import ActorType, AuditEvent

GENESIS = "0" * 64
REDACTED = "[redacted]"
_SECRET_FIELDS = {
    "secret_hash",
    "previous_secret_hash",
    "token",
    "secret",
    "password",
    "api_key",
    "alert_webhook_secret",
    "encrypted_api_key",
    "credential",
}
_LOCK_NAMESPACE = 0x5E17  # pg_advisory_xact_lock(namespace, tenant_id)


@dataclass(frozen=True, slots=True)
class RequestMeta:
    ip: str | None = None
    user_agent: str = ""
    request_id: str = ""

    @classmethod
    def from_request(cls, request: Any | None) -> RequestMeta:
        if request is None:
            return cls()
        meta = getattr(request, "META", {})
        return cls(
            ip=meta.get("REMOTE_ADDR") or None,
            user_agent=(meta.get("HTTP_USER_AGENT") or "")[:300],
            request_id=getattr(request, "request_id", "") or meta.get("HTTP_X_REQUEST_ID", "")[:64],
        )


def redact(values: dict[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    return {k: (REDACTED if k in _SECRET_FIELDS and v else v) for k, v in values.items()}


def _actor(actor: Any) -> tuple[str, str, str]:
    if actor is None:
        return ActorType.SYSTEM, "", "system"
    from tenants.models import ApiKey

    if isinstance(actor, ApiKey):
        return ActorType.API_KEY, str(actor.public_id), actor.display
    if getattr(actor, "is_authenticated", False) or getattr(actor, "pk", None) is not None:
        return ActorType.USER, str(actor.pk), getattr(actor, "email", "") or actor.get_username()
    return ActorType.SYSTEM, "", str(actor)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str)) if value is not None else None


def canonical(event: AuditEvent) -> bytes:
    """The bytes hashed for one row: every field but ``id`` and ``hash`` in a fixed order."""
    created: datetime = event.created_at
    content = [
        event.tenant_id,
        event.seq,
        created.astimezone(UTC).isoformat(timespec="microseconds"),
        event.actor_type,
        event.actor_id,
        event.actor_label,
        event.action,
        event.target_type,
        event.target_id,
        event.target_label,
        event.before,
        event.after,
        event.metadata,
        event.ip,
        event.user_agent,
        event.request_id,
        event.prev_hash,
    ]
    return json.dumps(content, sort_keys=True, separators=(",", ":"), default=str).encode()


def compute_hash(event: AuditEvent) -> str:
    return hashlib.sha256(canonical(event)).hexdigest()


def _lock_chain(tenant_id: int | None) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_NAMESPACE, tenant_id or 0])


def record(
    *,
    tenant: Any | None,
    action: str,
    actor: Any = None,
    target: Model | None = None,
    target_type: str = "",
    target_id: str = "",
    target_label: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    request: Any | None = None,
    meta: RequestMeta | None = None,
) -> AuditEvent:
    """Append one event to ``tenant``'s chain, in the caller's transaction.

    Writers for one tenant are serialised by a transaction-scoped advisory lock, so concurrent
    writers never fork the chain. Secret-looking fields in before/after are redacted.
    """
    meta = meta or RequestMeta.from_request(request)
    actor_type, actor_id, actor_label = _actor(actor)
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or str(target.pk)
        target_label = target_label or str(target)[:200]
    tenant_id = getattr(tenant, "pk", tenant)
    with transaction.atomic():
        _lock_chain(tenant_id)
        last = AuditEvent.objects.filter(tenant_id=tenant_id).order_by("-seq").values_list("seq", "hash").first()
        seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS)
        event = AuditEvent(
            tenant_id=tenant_id,
            seq=seq,
            created_at=timezone.now(),
            actor_type=actor_type,
            actor_id=actor_id,
            actor_label=actor_label[:200],
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            target_label=target_label[:200],
            before=_jsonable(redact(before)),
            after=_jsonable(redact(after)),
            metadata=_jsonable(metadata or {}),
            ip=meta.ip,
            user_agent=meta.user_agent,
            request_id=meta.request_id,
            prev_hash=prev_hash,
        )
        event.hash = compute_hash(event)
        event.save(force_insert=True)
    return event
