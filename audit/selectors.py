"""Audit reads: search with keyset pagination, event detail and diff, request-log search, and
chain verification. Every tenant read takes ``tenant=`` and filters by it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import Q, QuerySet, Subquery, TextField, Value
from django.db.models.functions import Cast, Coalesce, Upper

from audit.errors import ChainBroken, InvalidCursor
from audit.models import AuditEvent, RequestLog
from audit.services import GENESIS, RETENTION_ACTION, compute_hash

if TYPE_CHECKING:
    from tenants.models import Tenant

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
EXPORT_BATCH = 1000
# Substring filters need three characters: the trigram index (migration 0003) only helps from there.
MIN_CONTAINS = 3
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SEQ_CURSOR = re.compile(r"^[0-9]{1,18}$")
_TIME_CURSOR = re.compile(r"^(-?[0-9]{1,18})_([0-9]{1,18})$")


@dataclass(frozen=True, slots=True)
class Page[T]:
    items: list[T]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


def _upper_text(field: str) -> Upper:
    # Matches the expression of the trigram index in migration 0003 (PostgreSQL), so
    # ``UPPER(x) LIKE '%TERM%'`` is answered from the index.
    return Upper(Cast(field, TextField()), output_field=TextField())


def _page[T](rows: list[T], limit: int, cursor_of) -> Page[T]:
    if len(rows) > limit:
        return Page(rows[:limit], cursor_of(rows[limit - 1]))
    return Page(rows, None)


def _limit(limit: int) -> int:
    return max(1, min(int(limit), MAX_PAGE_SIZE))


# --------------------------------------------------------------------------- audit events
@dataclass(frozen=True, slots=True)
class AuditFilters:
    """``actor``: an actor id (user id, key public id) or part of the actor's label.
    ``action``: an exact action (``api_key.revoked``) or a family (``api_key``, ``api_key.*``).
    ``target``: ``type:id``, ``type:`` (every target of a type), a target id, or part of the
    target's label.
    ``since`` inclusive, ``until`` exclusive. ``q``: free text over the event's metadata."""

    actor: str = ""
    action: str = ""
    target: str = ""
    since: datetime | None = None
    until: datetime | None = None
    q: str = ""

    def as_params(self) -> dict[str, str]:
        """The non-empty filters as strings (query strings, export metadata)."""
        out: dict[str, str] = {}
        for name, value in asdict(self).items():
            if isinstance(value, datetime):
                out[name] = value.isoformat()
            elif value:
                out[name] = str(value)
        return out


def _action_q(action: str) -> Q:
    family = action.removesuffix("*").removesuffix(".")
    if family != action or "." not in action:
        return Q(action__startswith=f"{family}.")
    return Q(action=action)


def _actor_q(actor: str) -> Q:
    cond = Q(actor_id=actor)
    if len(actor) >= MIN_CONTAINS:
        cond |= Q(actor_label_u__contains=actor.upper())
    return cond


def _target_q(target: str) -> Q:
    kind, sep, ident = target.partition(":")
    if sep and kind:
        return Q(target_type=kind, target_id=ident) if ident else Q(target_type=kind)
    cond = Q(target_id=target)
    if len(target) >= MIN_CONTAINS:
        cond |= Q(target_label_u__contains=target.upper())
    return cond


_NO_UPPER_BOUND = Value(2**62)


def _first_seq_at(tenant: Tenant, moment: datetime) -> Subquery:
    return Subquery(
        AuditEvent.objects.filter(tenant=tenant, created_at__gte=moment).order_by("created_at", "seq").values("seq")[:1]
    )


def audit_event_filter(*, tenant: Tenant, filters: AuditFilters) -> QuerySet[AuditEvent]:
    """The tenant's events matching ``filters``, newest first (unpaginated; for counts and tests)."""
    qs = AuditEvent.objects.filter(tenant=tenant)
    if filters.action:
        qs = qs.filter(_action_q(filters.action.strip()))
    if filters.actor:
        qs = qs.alias(actor_label_u=_upper_text("actor_label")).filter(_actor_q(filters.actor.strip()))
    if filters.target:
        qs = qs.alias(target_label_u=_upper_text("target_label")).filter(_target_q(filters.target.strip()))
    # created_at never decreases along a chain (see ``record``), so a date range is also a seq range;
    # the seq bounds let PostgreSQL walk the seq index from the right place instead of the newest row.
    if filters.since is not None:
        qs = qs.filter(created_at__gte=filters.since, seq__gte=_first_seq_at(tenant, filters.since))
    if filters.until is not None:
        upper = Coalesce(_first_seq_at(tenant, filters.until), _NO_UPPER_BOUND)
        qs = qs.filter(created_at__lt=filters.until, seq__lt=upper)
    if filters.q:
        qs = qs.alias(metadata_u=_upper_text("metadata")).filter(metadata_u__contains=filters.q.strip().upper())
    return qs.order_by("-seq")


def _seq_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    if not _SEQ_CURSOR.match(cursor):
        raise InvalidCursor(cursor)
    return int(cursor)


def _audit_event_page(tenant: Tenant, filters: AuditFilters, cursor: str | None, limit: int) -> Page[AuditEvent]:
    qs = audit_event_filter(tenant=tenant, filters=filters)
    before = _seq_cursor(cursor)
    if before is not None:
        qs = qs.filter(seq__lt=before)
    return _page(list(qs[: limit + 1]), limit, lambda e: str(e.seq))


def audit_event_search(
    *, tenant: Tenant, filters: AuditFilters, cursor: str | None = None, limit: int = PAGE_SIZE
) -> Page[AuditEvent]:
    """One page (at most 200) of the tenant's matching events, newest first. Keyset pagination on
    ``seq``: ``cursor`` is the ``next_cursor`` of the previous page; raises :class:`InvalidCursor`."""
    return _audit_event_page(tenant, filters, cursor, _limit(limit))


def audit_event_get(*, tenant: Tenant, event_id: int) -> AuditEvent:
    """The tenant's event ``event_id``; another tenant's id raises ``AuditEvent.DoesNotExist``."""
    return AuditEvent.objects.get(tenant=tenant, pk=event_id)


def audit_event_batches(
    *, tenant: Tenant, filters: AuditFilters, before_seq: int | None = None, batch_size: int = EXPORT_BATCH
) -> Iterator[list[AuditEvent]]:
    """Every matching event (older than ``before_seq`` if given), newest first, in keyset batches
    (exports: bounded memory, short queries)."""
    cursor: str | None = str(before_seq) if before_seq is not None else None
    while True:
        page = _audit_event_page(tenant, filters, cursor, batch_size)
        if page.items:
            yield page.items
        if not page.has_more:
            return
        cursor = page.next_cursor


@dataclass(frozen=True, slots=True)
class DiffRow:
    field: str
    before: str
    after: str
    kind: str  # "changed" | "added" | "removed" | "same"


def _display(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def audit_event_diff(event: AuditEvent) -> list[DiffRow]:
    """Field-by-field comparison of ``before`` and ``after`` (keys in first-seen order)."""
    before = event.before if isinstance(event.before, dict) else {}
    after = event.after if isinstance(event.after, dict) else {}
    rows: list[DiffRow] = []
    for field in dict.fromkeys([*before, *after]):
        if field not in before:
            rows.append(DiffRow(field, "", _display(after[field]), "added"))
        elif field not in after:
            rows.append(DiffRow(field, _display(before[field]), "", "removed"))
        else:
            kind = "same" if before[field] == after[field] else "changed"
            rows.append(DiffRow(field, _display(before[field]), _display(after[field]), kind))
    return rows


# --------------------------------------------------------------------------- chain verification
@dataclass(frozen=True, slots=True)
class ChainReport:
    label: str
    count: int
    first_seq: int | None
    last_seq: int | None
    head_hash: str
    anchored: bool  # the chain starts at a retention anchor rather than at genesis


def chain_label(tenant: Tenant | None) -> str:
    return tenant.slug if tenant is not None else "platform"


def _anchor(label: str, chain: QuerySet[AuditEvent]) -> tuple[int, str, bool]:
    """Where verification starts: (first seq, hash it must link to, anchored?)."""
    anchor = chain.filter(action=RETENTION_ACTION).order_by("-seq").first()
    if anchor is None:
        return 1, GENESIS, False
    if compute_hash(anchor) != anchor.hash:
        raise ChainBroken(label, anchor.seq, "the retention anchor's content does not match its hash (row edited)")
    try:
        return int(anchor.metadata["removed_to_seq"]) + 1, str(anchor.metadata["anchor_hash"]), True
    except (KeyError, TypeError, ValueError):
        raise ChainBroken(label, anchor.seq, "the retention anchor has no removed range or anchor hash") from None


def audit_chain_verify(*, tenant: Tenant | None) -> ChainReport:
    """Walk ``tenant``'s chain (``None``: the platform chain) in seq order from its anchor
    (genesis, or the latest retention anchor) and check every link.

    Raises :class:`ChainBroken` at the first broken link: a seq gap (row deleted), a row that does
    not link to its predecessor's hash (inserted, deleted or reordered rows) or whose content does
    not match its hash (edited). Removing the newest rows leaves a valid shorter chain: compare the
    reported head hash with one recorded earlier to detect that.
    """
    label = chain_label(tenant)
    chain = AuditEvent.objects.filter(tenant_id=getattr(tenant, "pk", None))
    expected, prev, anchored = _anchor(label, chain)
    start = expected
    count = 0
    for event in chain.order_by("seq").iterator(chunk_size=2000):
        if event.seq < expected:
            raise ChainBroken(label, event.seq, f"unexpected row before seq {expected} (inserted before the anchor)")
        if event.seq > expected:
            missing = f"seq {expected}" if event.seq == expected + 1 else f"seq {expected}..{event.seq - 1}"
            raise ChainBroken(label, expected, f"{missing} missing (row deleted)")
        if event.prev_hash != prev:
            raise ChainBroken(
                label, event.seq, "does not link to the previous row's hash (row inserted, deleted or reordered)"
            )
        if compute_hash(event) != event.hash:
            raise ChainBroken(label, event.seq, "content does not match its hash (row edited)")
        prev = event.hash
        expected += 1
        count += 1
    return ChainReport(
        label=label,
        count=count,
        first_seq=start if count else None,
        last_seq=expected - 1 if count else None,
        head_hash=prev,
        anchored=anchored,
    )


# --------------------------------------------------------------------------- request log
REQUEST_STATUSES = ("ok", "error", "client_closed", "rejected")


@dataclass(frozen=True, slots=True)
class RequestLogFilters:
    """``key``: a key's public id or its displayed form (``sk-sntl-<public id>-…``)."""

    request_id: str = ""
    key: str = ""
    model: str = ""
    status: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def as_params(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in asdict(self).items():
            if isinstance(value, datetime):
                out[name] = value.isoformat()
            elif value:
                out[name] = str(value)
        return out


def _public_id(key: str) -> str:
    key = key.strip()
    if key.startswith("sk-sntl-"):
        return key.removeprefix("sk-sntl-").split("-", 1)[0]
    return key


def request_log_filter(*, tenant: Tenant, filters: RequestLogFilters) -> QuerySet[RequestLog]:
    qs = RequestLog.objects.filter(tenant=tenant)
    if filters.request_id:
        qs = qs.filter(request_id=filters.request_id.strip())
    if filters.key:
        qs = qs.filter(key_public_id=_public_id(filters.key))
    if filters.model:
        qs = qs.filter(model=filters.model.strip())
    if filters.status:
        qs = qs.filter(status=filters.status.strip())
    if filters.since is not None:
        qs = qs.filter(created_at__gte=filters.since)
    if filters.until is not None:
        qs = qs.filter(created_at__lt=filters.until)
    return qs.order_by("-created_at", "-id")


def _time_cursor(row: RequestLog) -> str:
    return f"{(row.created_at - _EPOCH) // timedelta(microseconds=1)}_{row.pk}"


def _parse_time_cursor(cursor: str) -> tuple[datetime, int]:
    match = _TIME_CURSOR.match(cursor)
    if match is None:
        raise InvalidCursor(cursor)
    try:
        return _EPOCH + timedelta(microseconds=int(match[1])), int(match[2])
    except OverflowError:
        raise InvalidCursor(cursor) from None


def _request_log_page(tenant: Tenant, filters: RequestLogFilters, cursor: str | None, limit: int) -> Page[RequestLog]:
    qs = request_log_filter(tenant=tenant, filters=filters)
    if cursor:
        at, pk = _parse_time_cursor(cursor)
        # The redundant ``created_at <= at`` is the index range; the OR breaks ties.
        qs = qs.filter(created_at__lte=at).filter(Q(created_at__lt=at) | Q(pk__lt=pk))
    return _page(list(qs[: limit + 1]), limit, _time_cursor)


def request_log_search(
    *, tenant: Tenant, filters: RequestLogFilters, cursor: str | None = None, limit: int = PAGE_SIZE
) -> Page[RequestLog]:
    """One page (at most 200) of the tenant's request log, newest first; keyset pagination on
    (created_at, id). Raises :class:`InvalidCursor`."""
    return _request_log_page(tenant, filters, cursor, _limit(limit))


def request_log_get(*, tenant: Tenant, request_id: str) -> RequestLog:
    return RequestLog.objects.get(tenant=tenant, request_id=request_id)


def request_log_batches(
    *, tenant: Tenant, filters: RequestLogFilters, batch_size: int = EXPORT_BATCH
) -> Iterator[list[RequestLog]]:
    cursor: str | None = None
    while True:
        page = _request_log_page(tenant, filters, cursor, batch_size)
        if page.items:
            yield page.items
        if not page.has_more:
            return
        cursor = page.next_cursor
