"""Audit writes: the audit log's one entry point, :func:`record`; retention; the request log.

Every admin mutation and security event calls ``record(...)`` inside the transaction of the change
it describes, so the event and the change commit or roll back together. Chain verification (a
read) is :func:`audit.selectors.audit_chain_verify`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from audit.models import ActorType, AuditEvent, RequestLog

if TYPE_CHECKING:
    from billing.usage import UsageRecord
    from tenants.models import Tenant

GENESIS = "0" * 64
REDACTED = "[redacted]"
RETENTION_ACTION = "audit.retention_applied"
PROMPT_TEXT_MAX_CHARS = 20_000
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


def _ip(value: str | None) -> str | None:
    """The address as the database will store and return it (so the hash survives a round trip)."""
    if not value:
        return None
    try:
        ipaddress.ip_address(value.split("%", 1)[0])
        return AuditEvent._meta.get_field("ip").get_prep_value(value)
    except (ValueError, ValidationError):
        return None


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
    writers never fork the chain, and ``created_at`` never decreases along it. Secret-looking
    fields in before/after are redacted.
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
        return _append(
            tenant_id,
            _head(tenant_id),
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
            ip=_ip(meta.ip),
            user_agent=meta.user_agent,
            request_id=meta.request_id,
        )


Head = tuple[int, str, datetime]  # (seq, hash, created_at) of a chain's newest row


def _head(tenant_id: int | None) -> Head | None:
    return (
        AuditEvent.objects.filter(tenant_id=tenant_id).order_by("-seq").values_list("seq", "hash", "created_at").first()
    )


def _append(tenant_id: int | None, head: Head | None, **fields: Any) -> AuditEvent:
    """Write the row after ``head``; the caller holds the chain's lock."""
    seq, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS)
    # created_at never goes back along a chain (clock skew between hosts), so a date range is a
    # seq range: the search pages rely on it.
    created_at = max(timezone.now(), head[2]) if head else timezone.now()
    event = AuditEvent(tenant_id=tenant_id, seq=seq, created_at=created_at, prev_hash=prev_hash, **fields)
    event.hash = compute_hash(event)
    event.save(force_insert=True)
    return event


# --------------------------------------------------------------------------- login / logout
def login_succeeded(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """``user_logged_in`` receiver. Logins go on the platform chain (a user may belong to many
    tenants); the user's tenants are listed in the metadata so a tenant search can still find them."""
    record(
        tenant=None,
        action="login.succeeded",
        actor=user,
        target=user,
        target_label=getattr(user, "email", "") or user.get_username(),
        metadata={"tenants": _tenant_slugs(user)},
        request=request,
    )


def login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    """``user_login_failed`` receiver: the claimed username only (Django already masks the password)."""
    from django.contrib.auth import get_user_model

    username = str(credentials.get("username", ""))[:150]
    user = get_user_model().objects.filter(username=username).first() if username else None
    record(
        tenant=None,
        action="login.failed",
        actor="anonymous",
        target=user,
        target_type="auth.user",
        target_label=username,
        metadata={"username": username},
        request=request,
    )


def logout_succeeded(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is None:
        return  # logging out an anonymous session changes nothing
    record(
        tenant=None,
        action="logout.succeeded",
        actor=user,
        target=user,
        target_label=getattr(user, "email", "") or user.get_username(),
        request=request,
    )


def _tenant_slugs(user: Any) -> list[str]:
    from tenants.models import Membership

    return sorted(Membership.objects.filter(user=user).values_list("tenant__slug", flat=True))


# --------------------------------------------------------------------------- export
def export_recorded(
    *, tenant: Tenant, actor: Any, kind: str, fmt: str, filters: dict[str, Any], request: Any = None
) -> AuditEvent:
    """Record ``export.downloaded`` for one export of a filtered view (before it streams)."""
    with transaction.atomic():
        return record(
            tenant=tenant,
            action="export.downloaded",
            actor=actor,
            target_type=kind,
            metadata={"format": fmt, "filters": {k: v for k, v in filters.items() if v not in ("", None)}},
            request=request,
        )


# --------------------------------------------------------------------------- retention
@dataclass(frozen=True, slots=True)
class RetentionResult:
    removed_from_seq: int
    removed_to_seq: int
    removed_count: int
    anchor_hash: str
    anchor_event: AuditEvent


def _allow_retention_delete() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL sentinel.audit_retention = 'on'")


@transaction.atomic
def audit_retention_apply(
    *, tenant: Tenant | None, retention_days: int, now: datetime | None = None
) -> RetentionResult | None:
    """Remove the chain's oldest segment (every row up to the newest one older than the cut-off)
    and append an ``audit.retention_applied`` event naming the removed seq range and the hash of
    the last removed row, which becomes the chain's anchor for verification.

    Idempotent: nothing older than the cut-off -> nothing removed, no event, ``None``.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(days=retention_days)
    tenant_id = getattr(tenant, "pk", tenant)
    _lock_chain(tenant_id)
    chain = AuditEvent.objects.filter(tenant_id=tenant_id)
    last_old = chain.filter(created_at__lt=cutoff).order_by("-seq").values_list("seq", "hash").first()
    if last_old is None:
        return None
    to_seq, anchor_hash = last_old
    from_seq = chain.order_by("seq").values_list("seq", flat=True).first()
    head = _head(tenant_id)
    _allow_retention_delete()
    removed, _ = chain.filter(seq__lte=to_seq).delete()
    # Appended after the newest row, or after the removed head when nothing newer is left, so the
    # numbering and the links continue either way.
    event = _append(
        tenant_id,
        _head(tenant_id) or head,
        actor_type=ActorType.SYSTEM,
        actor_label="system",
        action=RETENTION_ACTION,
        metadata={
            "removed_from_seq": from_seq,
            "removed_to_seq": to_seq,
            "removed_count": removed,
            "anchor_hash": anchor_hash,
            "cutoff": cutoff.astimezone(UTC).isoformat(),
            "retention_days": retention_days,
        },
    )
    return RetentionResult(from_seq, to_seq, removed, anchor_hash, event)


# --------------------------------------------------------------------------- request log
def _request_log_row(record_: UsageRecord, public_ids: dict[int, str], prompts_on: set[int]) -> RequestLog:
    prompt = record_.prompt_log[:PROMPT_TEXT_MAX_CHARS] if record_.tenant_id in prompts_on else ""
    return RequestLog(
        tenant_id=record_.tenant_id,
        request_id=record_.request_id,
        created_at=record_.created_at,
        api_key_id=record_.api_key_id,
        key_public_id=public_ids.get(record_.api_key_id, "") if record_.api_key_id else "",
        endpoint=record_.endpoint[:32],
        model=record_.model[:128],
        provider=record_.provider[:64],
        status=record_.status[:16],
        http_status=record_.http_status,
        prompt_tokens=record_.prompt_tokens,
        completion_tokens=record_.completion_tokens,
        cost_micros=record_.cost_micros,
        latency_ms=record_.latency_ms,
        ttft_ms=record_.ttft_ms,
        stream=record_.stream,
        cache_hit=record_.cache_hit,
        guardrail_flags=list(record_.guardrail_flags),
        error_type=record_.error_type[:64],
        prompt_text=prompt,
    )


def request_log_insert(*, records: list[UsageRecord]) -> int:
    """Idempotent bulk insert of request-log rows (a request id already logged is skipped).

    Called by billing's spool drain in the transaction of the ledger insert. Prompt text is kept
    only for tenants with ``log_prompts`` on (the gateway has already redacted it). Returns how
    many records were offered.
    """
    if not records:
        return 0
    from tenants.models import ApiKey, Tenant

    tenant_ids = {r.tenant_id for r in records}
    key_ids = {r.api_key_id for r in records if r.api_key_id}
    prompts_on = set(Tenant.objects.filter(pk__in=tenant_ids, log_prompts=True).values_list("pk", flat=True))
    public_ids = dict(ApiKey.objects.filter(pk__in=key_ids).values_list("pk", "public_id")) if key_ids else {}
    rows = [_request_log_row(r, public_ids, prompts_on) for r in records]
    RequestLog.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
    return len(rows)


def request_log_purge(*, tenant: Tenant, now: datetime | None = None, batch_size: int = 10_000) -> int:
    """Delete the tenant's request-log rows older than ``request_log_retention_days``, in batches
    (short transactions, no long lock). Returns how many rows were deleted."""
    cutoff = (now or timezone.now()) - timedelta(days=tenant.request_log_retention_days)
    total = 0
    while True:
        ids = list(
            RequestLog.objects.filter(tenant=tenant, created_at__lt=cutoff).values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return total
        deleted, _ = RequestLog.objects.filter(tenant=tenant, pk__in=ids).delete()
        total += deleted
