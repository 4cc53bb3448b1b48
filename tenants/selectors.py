"""Reads for the console. Every tenant read takes ``tenant=`` and filters by it."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Case, Count, IntegerField, Q, QuerySet, Value, When
from django.utils import timezone

from tenants.models import ApiKey, Membership, Role, Tenant, UserProfile

KEY_STATUSES = ("active", "revoked", "expired")


def membership_list_for_user(*, user: AbstractBaseUser) -> list[Membership]:
    """The user's memberships with their tenants, by tenant name (the tenant switcher)."""
    if not user.is_authenticated:
        return []
    return list(Membership.objects.filter(user=user).select_related("tenant").order_by("tenant__name"))


def membership_for_slug(*, user: AbstractBaseUser, tenant_slug: str) -> Membership | None:
    return Membership.objects.select_related("tenant").filter(user=user, tenant__slug=tenant_slug).first()


def api_key_list(*, tenant: Tenant, search: str = "", status: str = "") -> QuerySet[ApiKey]:
    """The tenant's keys, newest first; ``search`` matches name or public id, ``status`` is one of
    ``KEY_STATUSES`` (anything else: all)."""
    now = timezone.now()
    keys = ApiKey.objects.filter(tenant=tenant).select_related("created_by")
    search = search.strip()
    if search:
        token = search.removeprefix("sk-sntl-").split("-", 1)[0]
        keys = keys.filter(Q(name__icontains=search) | Q(public_id__iexact=token))
    if status == "revoked":
        keys = keys.filter(revoked_at__isnull=False)
    elif status == "expired":
        keys = keys.filter(revoked_at__isnull=True, expires_at__lte=now)
    elif status == "active":
        keys = keys.filter(revoked_at__isnull=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    return keys.order_by("-created_at", "-pk")


def api_key_get(*, tenant: Tenant, key_id: int) -> ApiKey:
    """Raises ``ApiKey.DoesNotExist`` for a key of another tenant, like for a missing one."""
    return ApiKey.objects.get(tenant=tenant, pk=key_id)


def api_key_counts(*, tenant: Tenant) -> dict[str, int]:
    now = timezone.now()
    return ApiKey.objects.filter(tenant=tenant).aggregate(
        total=Count("pk"),
        active=Count("pk", filter=Q(revoked_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))),
    )


def membership_list(*, tenant: Tenant) -> QuerySet[Membership]:
    order = {Role.OWNER: 0, Role.ADMIN: 1, Role.FINANCE: 2, Role.VIEWER: 3}

    rank = Case(*(When(role=r, then=Value(n)) for r, n in order.items()), output_field=IntegerField())
    return (
        Membership.objects.filter(tenant=tenant)
        .select_related("user")
        .annotate(role_rank=rank)
        .order_by("role_rank", "user__email", "pk")
    )


def membership_get(*, tenant: Tenant, membership_id: int) -> Membership:
    """Raises ``Membership.DoesNotExist`` for another tenant's membership."""
    return Membership.objects.select_related("user").get(tenant=tenant, pk=membership_id)


def owner_count(*, tenant: Tenant) -> int:
    return Membership.objects.filter(tenant=tenant, role=Role.OWNER).count()


def tenant_list_for_platform(*, search: str = "", status: str = "") -> QuerySet[Tenant]:
    """Every tenant with member and key counts (platform operators only)."""
    tenants = Tenant.objects.annotate(
        member_count=Count("memberships", distinct=True),
        active_key_count=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True), distinct=True),
    )
    search = search.strip()
    if search:
        tenants = tenants.filter(Q(name__icontains=search) | Q(slug__icontains=search))
    if status in Tenant.Status.values:
        tenants = tenants.filter(status=status)
    return tenants.order_by("name", "pk")


def tenant_get_for_platform(*, tenant_id: int) -> Tenant:
    return Tenant.objects.get(pk=tenant_id)


def user_must_change_password(*, user: AbstractBaseUser) -> bool:
    if not user.is_authenticated:
        return False
    return UserProfile.objects.filter(user=user, must_change_password=True).exists()


def user_exists(*, email: str) -> bool:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(email__iexact=email.strip()).exists()
