"""Writes for tenants, memberships and API keys. Each service owns its transaction and audits."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import record
from tenants import keys
from tenants.errors import LastOwner, TenantSlugTaken
from tenants.models import ApiKey, BudgetPeriod, Membership, Role, Tenant

User = get_user_model()

KEY_AUDIT_FIELDS = (
    "name",
    "allowed_models",
    "rpm",
    "tpm",
    "budget_usd",
    "budget_period",
    "expires_at",
    "scopes",
    "tags",
)


def _snapshot(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {f: getattr(obj, f) for f in fields}


def key_state_changed(key: ApiKey) -> None:
    """Tell every gateway process to forget its cached copy of ``key`` (revocation within 1 s)."""
    from tenants import keycache

    keycache.publish_invalidation(key.public_id)


# --------------------------------------------------------------------------- tenants
@transaction.atomic
def tenant_create(
    *,
    slug: str,
    name: str = "",
    owner_email: str | None = None,
    actor: Any = None,
    timezone_name: str = "UTC",
) -> tuple[Tenant, AbstractBaseUser | None, str | None]:
    """Create a tenant and, optionally, its owner. Returns (tenant, owner, one-time password or None).

    A new owner user gets a random one-time password that must be changed at first login.
    """
    if Tenant.objects.filter(slug=slug).exists():
        raise TenantSlugTaken(f"a tenant with slug {slug!r} already exists")
    tenant = Tenant(slug=slug, name=name or slug.replace("-", " ").title(), timezone=timezone_name)
    tenant.full_clean()
    try:
        with transaction.atomic():
            tenant.save(force_insert=True)
    except IntegrityError:
        raise TenantSlugTaken(f"a tenant with slug {slug!r} already exists") from None
    record(
        tenant=tenant,
        action="tenant.created",
        actor=actor,
        target=tenant,
        after={"slug": tenant.slug, "name": tenant.name, "timezone": tenant.timezone},
    )
    owner, password = None, None
    if owner_email:
        owner, password = user_get_or_create(email=owner_email)
        membership_add(tenant=tenant, user=owner, role=Role.OWNER, actor=actor)
    return tenant, owner, password


def user_get_or_create(*, email: str) -> tuple[AbstractBaseUser, str | None]:
    """The user with this email; a new one gets a one-time password (returned) to change at first login."""
    email = User.objects.normalize_email(email).lower()
    user = User.objects.filter(email__iexact=email).first()
    if user is not None:
        return user, None
    password = secrets.token_urlsafe(12)
    user = User.objects.create_user(username=email, email=email, password=password)
    from tenants.models import UserProfile

    UserProfile.objects.create(user=user, must_change_password=True)
    return user, password


@transaction.atomic
def membership_add(
    *, tenant: Tenant, user: AbstractBaseUser, role: str, actor: Any = None, request: Any = None
) -> Membership:
    membership, created = Membership.objects.get_or_create(tenant=tenant, user=user, defaults={"role": role})
    if created:
        record(
            tenant=tenant,
            action="member.added",
            actor=actor,
            target=membership,
            request=request,
            target_label=user.email,
            after={"user": user.email, "role": role},
        )
    elif membership.role != role:
        membership_set_role(tenant=tenant, membership_id=membership.pk, role=role, actor=actor, request=request)
        membership.refresh_from_db()
    return membership


def _owners_left(tenant: Tenant, excluding: int) -> int:
    return Membership.objects.filter(tenant=tenant, role=Role.OWNER).exclude(pk=excluding).count()


@transaction.atomic
def membership_set_role(
    *, tenant: Tenant, membership_id: int, role: str, actor: Any = None, request: Any = None
) -> Membership:
    membership = Membership.objects.select_for_update().select_related("user").get(tenant=tenant, pk=membership_id)
    if membership.role == role:
        return membership
    if membership.role == Role.OWNER and _owners_left(tenant, membership.pk) == 0:
        raise LastOwner("the last owner cannot be demoted; make someone else owner first")
    before = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    record(
        tenant=tenant,
        action="member.role_changed",
        actor=actor,
        target=membership,
        request=request,
        target_label=membership.user.email,
        before={"role": before},
        after={"role": role},
    )
    return membership


@transaction.atomic
def membership_remove(*, tenant: Tenant, membership_id: int, actor: Any = None, request: Any = None) -> None:
    membership = Membership.objects.select_for_update().select_related("user").get(tenant=tenant, pk=membership_id)
    if membership.role == Role.OWNER and _owners_left(tenant, membership.pk) == 0:
        raise LastOwner("the last owner cannot be removed")
    record(
        tenant=tenant,
        action="member.removed",
        actor=actor,
        target=membership,
        request=request,
        target_label=membership.user.email,
        before={"user": membership.user.email, "role": membership.role},
    )
    membership.delete()


# --------------------------------------------------------------------------- API keys
@transaction.atomic
def api_key_create(
    *,
    tenant: Tenant,
    actor: Any = None,
    name: str,
    allowed_models: list[str] | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    budget_usd: Decimal | None = None,
    budget_period: str = BudgetPeriod.MONTH,
    expires_at: datetime | None = None,
    scopes: list[str] | None = None,
    tags: dict[str, str] | None = None,
    request: Any = None,
) -> tuple[ApiKey, str]:
    """Mint a key. Returns (key, token); the token is shown once and only its hash is stored."""
    minted = keys.mint()
    key = ApiKey(
        tenant=tenant,
        name=name,
        public_id=minted.public_id,
        secret_hash=minted.secret_hash,
        last4=minted.last4,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
        allowed_models=sorted(set(allowed_models or [])),
        rpm=rpm,
        tpm=tpm,
        budget_usd=budget_usd,
        budget_period=budget_period,
        expires_at=expires_at,
        scopes=sorted(set(scopes or [])),
        tags=tags or {},
    )
    key.full_clean(exclude=["created_by"])
    key.save(force_insert=True)
    record(
        tenant=tenant,
        action="api_key.created",
        actor=actor,
        target=key,
        request=request,
        after=_snapshot(key, KEY_AUDIT_FIELDS),
    )
    return key, minted.token


@transaction.atomic
def api_key_revoke(*, tenant: Tenant, key_id: int, actor: Any = None, request: Any = None) -> ApiKey:
    key = ApiKey.objects.select_for_update().get(tenant=tenant, pk=key_id)
    if key.revoked_at is not None:
        return key  # idempotent: a double click is not an error
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    record(tenant=tenant, action="api_key.revoked", actor=actor, target=key, request=request)
    transaction.on_commit(lambda: key_state_changed(key))
    return key


@transaction.atomic
def api_key_rotate(
    *, tenant: Tenant, key_id: int, actor: Any = None, grace: timedelta = timedelta(0), request: Any = None
) -> tuple[ApiKey, str]:
    """New secret for the same key id and budget; the old secret stays valid for ``grace``."""
    key = ApiKey.objects.select_for_update().get(tenant=tenant, pk=key_id)
    if key.revoked_at is not None:
        from tenants.errors import TenantsError

        raise TenantsError("a revoked key cannot be rotated")
    minted = keys.mint(public_id=key.public_id)
    now = timezone.now()
    key.previous_secret_hash = key.secret_hash if grace > timedelta(0) else ""
    key.previous_valid_until = now + grace if grace > timedelta(0) else None
    key.secret_hash = minted.secret_hash
    key.last4 = minted.last4
    key.save(update_fields=["previous_secret_hash", "previous_valid_until", "secret_hash", "last4"])
    record(
        tenant=tenant,
        action="api_key.rotated",
        actor=actor,
        target=key,
        request=request,
        metadata={"grace_seconds": int(grace.total_seconds())},
    )
    transaction.on_commit(lambda: key_state_changed(key))
    return key, minted.token


@transaction.atomic
def api_key_update(*, tenant: Tenant, key_id: int, actor: Any = None, request: Any = None, **changes: Any) -> ApiKey:
    """Change the editable settings of a key (name, models, limits, budget, expiry, scopes, tags)."""
    unknown = set(changes) - set(KEY_AUDIT_FIELDS)
    if unknown:
        raise TypeError(f"api_key_update got unexpected fields: {', '.join(sorted(unknown))}")
    key = ApiKey.objects.select_for_update().get(tenant=tenant, pk=key_id)
    before = _snapshot(key, KEY_AUDIT_FIELDS)
    for field, value in changes.items():
        setattr(key, field, value)
    key.full_clean(exclude=["created_by"])
    changed = [f for f in changes if before[f] != getattr(key, f)]
    if not changed:
        return key
    key.save(update_fields=changed)
    action = "budget.changed" if set(changed) <= {"budget_usd", "budget_period"} else "api_key.updated"
    record(
        tenant=tenant,
        action=action,
        actor=actor,
        target=key,
        request=request,
        before={f: before[f] for f in changed},
        after={f: getattr(key, f) for f in changed},
    )
    transaction.on_commit(lambda: key_state_changed(key))
    return key


TENANT_SETTINGS_FIELDS = (
    "name",
    "timezone",
    "default_rpm",
    "default_tpm",
    "rpm",
    "tpm",
    "allowed_models",
    "budget_usd",
    "budget_period",
    "guardrails",
    "cache_ttl_seconds",
    "log_prompts",
    "request_log_retention_days",
    "audit_retention_days",
    "alert_webhook_url",
    "alert_webhook_secret",
    "alert_emails",
    "alert_thresholds",
)


@transaction.atomic
def tenant_update(*, tenant: Tenant, actor: Any = None, request: Any = None, **changes: Any) -> Tenant:
    unknown = set(changes) - set(TENANT_SETTINGS_FIELDS)
    if unknown:
        raise TypeError(f"tenant_update got unexpected fields: {', '.join(sorted(unknown))}")
    locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
    before = _snapshot(locked, TENANT_SETTINGS_FIELDS)
    for field, value in changes.items():
        setattr(locked, field, value)
    locked.full_clean()
    changed = [f for f in changes if before[f] != getattr(locked, f)]
    if not changed:
        return locked
    locked.save(update_fields=changed)
    action = "budget.changed" if set(changed) <= {"budget_usd", "budget_period"} else "tenant.settings_changed"
    record(
        tenant=locked,
        action=action,
        actor=actor,
        target=locked,
        request=request,
        before={f: before[f] for f in changed},
        after={f: getattr(locked, f) for f in changed},
    )
    transaction.on_commit(lambda: tenant_state_changed(locked))
    return locked


@transaction.atomic
def tenant_set_status(*, tenant: Tenant, status: str, actor: Any = None, request: Any = None) -> Tenant:
    locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if locked.status == status:
        return locked
    before = locked.status
    locked.status = status
    locked.save(update_fields=["status"])
    action = "tenant.suspended" if status == Tenant.Status.SUSPENDED else "tenant.reactivated"
    record(
        tenant=locked,
        action=action,
        actor=actor,
        target=locked,
        request=request,
        before={"status": before},
        after={"status": status},
    )
    transaction.on_commit(lambda: tenant_state_changed(locked))
    return locked


def tenant_state_changed(tenant: Tenant) -> None:
    from tenants import keycache

    keycache.publish_invalidation(f"tenant:{tenant.pk}")


# --------------------------------------------------------------------------- console: invitations, passwords
INVITATION_SALT = "sentinel.tenants.invitation"
INVITATION_MAX_AGE = timedelta(days=3)


@dataclass(frozen=True)
class Invitation:
    tenant: Tenant
    email: str
    role: str
    invited_by: str


def _invitation_signer():
    from django.core.signing import TimestampSigner

    return TimestampSigner(salt=INVITATION_SALT)


@transaction.atomic
def member_invite(
    *,
    tenant: Tenant,
    email: str,
    role: str,
    actor: Any = None,
    link_for: Callable[[str], str],
    request: Any = None,
) -> str:
    """Email a signed invitation link (valid ``INVITATION_MAX_AGE``) and audit ``member.invited``.

    Returns the token. ``link_for(token)`` builds the absolute acceptance URL. The email is sent
    after the transaction commits; accepting twice is harmless (membership_add is idempotent).
    """
    from django.core.mail import send_mail

    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}")
    email = User.objects.normalize_email(email).strip().lower()
    inviter = getattr(actor, "email", "") or str(actor or "")
    token = _invitation_signer().sign_object({"t": tenant.pk, "e": email, "r": role, "by": inviter})
    record(
        tenant=tenant,
        action="member.invited",
        actor=actor,
        target_type="auth.user",
        target_id=email,
        target_label=email,
        request=request,
        after={"email": email, "role": role},
    )
    link = link_for(token)
    days = INVITATION_MAX_AGE.days
    body = (
        f"{inviter or 'A colleague'} invited you to join {tenant.name} on Sentinel as {Role(role).label.lower()}.\n\n"
        f"Accept the invitation within {days} days:\n{link}\n\n"
        "If you did not expect this email you can ignore it."
    )
    transaction.on_commit(
        lambda: send_mail(f"You're invited to {tenant.name} on Sentinel", body, None, [email], fail_silently=False)
    )
    return token


def invitation_read(*, token: str) -> Invitation:
    """Check the signature and age of an invitation token. Raises ``InvalidInvitation``."""
    from django.core.signing import BadSignature, SignatureExpired

    from tenants.errors import InvalidInvitation

    try:
        data = _invitation_signer().unsign_object(token, max_age=INVITATION_MAX_AGE)
    except SignatureExpired:
        raise InvalidInvitation("This invitation has expired. Ask for a new one.") from None
    except BadSignature:
        raise InvalidInvitation("This invitation link is not valid.") from None
    tenant = Tenant.objects.filter(pk=data.get("t")).first()
    if tenant is None or data.get("r") not in Role.values or not data.get("e"):
        raise InvalidInvitation("This invitation link is not valid.")
    if not tenant.is_active:
        raise InvalidInvitation("This tenant is suspended; invitations cannot be accepted.")
    return Invitation(tenant=tenant, email=data["e"], role=data["r"], invited_by=data.get("by", ""))


@transaction.atomic
def invitation_accept(*, token: str, user: AbstractBaseUser, request: Any = None) -> Membership:
    """Add the signed-in ``user`` to the invitation's tenant. The user's email must be the invited one.

    An existing member keeps the higher of their role and the invited one is not applied: an
    invitation never changes an existing membership's role.
    """
    from tenants.errors import InvalidInvitation

    invitation = invitation_read(token=token)
    if (user.email or "").strip().lower() != invitation.email:
        raise InvalidInvitation(f"This invitation is for {invitation.email}. Sign in with that account to accept it.")
    existing = Membership.objects.filter(tenant=invitation.tenant, user=user).first()
    if existing is not None:
        return existing
    return membership_add(tenant=invitation.tenant, user=user, role=invitation.role, actor=user, request=request)


@transaction.atomic
def invitation_accept_new_user(
    *, token: str, password: str, request: Any = None
) -> tuple[AbstractBaseUser, Membership]:
    """Create the invited user with the password they chose, then accept the invitation."""
    from django.contrib.auth.password_validation import validate_password

    from tenants.errors import InvalidInvitation
    from tenants.models import UserProfile

    invitation = invitation_read(token=token)
    if User.objects.filter(email__iexact=invitation.email).exists():
        raise InvalidInvitation("An account with this email already exists. Sign in to accept the invitation.")
    user = User(username=invitation.email, email=invitation.email)
    validate_password(password, user)
    user.set_password(password)
    user.save()
    UserProfile.objects.create(user=user, must_change_password=False)
    record(
        tenant=None,
        action="user.created",
        actor=user,
        target=user,
        target_label=user.email,
        request=request,
        metadata={"via": "invitation", "tenant": invitation.tenant.slug},
    )
    membership = membership_add(tenant=invitation.tenant, user=user, role=invitation.role, actor=user, request=request)
    return user, membership


@transaction.atomic
def user_password_set(*, user: AbstractBaseUser, password: str, reason: str, request: Any = None) -> None:
    """Set a user's password (already validated by the form), clear the must-change flag, audit it on
    the platform chain. ``reason``: ``changed`` or ``reset``."""
    from tenants.models import UserProfile

    user.set_password(password)
    user.save(update_fields=["password"])
    UserProfile.objects.filter(user=user, must_change_password=True).update(must_change_password=False)
    record(
        tenant=None,
        action=f"user.password_{reason}",
        actor=user,
        target=user,
        target_label=getattr(user, "email", "") or str(user),
        request=request,
    )


def login_throttled_record(*, username: str, request: Any = None) -> None:
    """A sign-in was locked out after repeated failures (security event, platform chain)."""
    record(
        tenant=None,
        action="user.login_throttled",
        target_type="auth.user",
        target_id=username[:150],
        target_label=username[:200],
        request=request,
    )


@transaction.atomic
def tenant_close(*, tenant: Tenant, actor: Any = None, request: Any = None) -> Tenant:
    """The owner deletes the tenant: every key is revoked, every membership removed and the tenant
    suspended. The ledger and audit chain stay (they are append-only and referenced by invoices),
    so the row is kept, unreachable from the console, rather than deleted."""
    locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
    now = timezone.now()
    revoked = list(ApiKey.objects.filter(tenant=locked, revoked_at__isnull=True).values_list("public_id", flat=True))
    ApiKey.objects.filter(tenant=locked, revoked_at__isnull=True).update(revoked_at=now)
    members = list(Membership.objects.filter(tenant=locked).values_list("user__email", "role"))
    Membership.objects.filter(tenant=locked).delete()
    before_status = locked.status
    locked.status = Tenant.Status.SUSPENDED
    locked.save(update_fields=["status"])
    record(
        tenant=locked,
        action="tenant.deleted",
        actor=actor,
        target=locked,
        request=request,
        before={"status": before_status, "members": [f"{e} ({r})" for e, r in members]},
        after={"status": locked.status},
        metadata={"revoked_keys": len(revoked)},
    )

    def _invalidate() -> None:
        from tenants import keycache

        for public_id in revoked:
            keycache.publish_invalidation(public_id)
        tenant_state_changed(locked)

    transaction.on_commit(_invalidate)
    return locked
