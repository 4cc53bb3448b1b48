"""Django admin for tenants data: read-only, with actions that go through the audited services
(the console is where tenants manage themselves; the admin is the platform operator's view).
Secrets (key hashes, webhook signing secrets) are never displayed."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from tenants import services
from tenants.models import ApiKey, Membership, Tenant, UserProfile


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Tenant)
class TenantAdmin(ReadOnlyAdmin):
    list_display = ("name", "slug", "status", "timezone", "budget_usd", "budget_period", "created_at")
    list_filter = ("status", "budget_period")
    search_fields = ("name", "slug")
    exclude = ("alert_webhook_secret",)
    readonly_fields = ("webhook_secret_set",)
    actions = ("suspend", "reactivate")

    @admin.display(description="Webhook signing secret", boolean=True)
    def webhook_secret_set(self, obj: Tenant) -> bool:
        return bool(obj.alert_webhook_secret)

    def _set_status(self, request: HttpRequest, queryset: QuerySet[Tenant], status: str) -> None:
        for tenant in queryset:
            services.tenant_set_status(tenant=tenant, status=status, actor=request.user, request=request)
        self.message_user(request, f"{queryset.count()} tenant(s) now {status}.", messages.SUCCESS)

    @admin.action(description="Suspend selected tenants (their keys get 403)")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        self._set_status(request, queryset, Tenant.Status.SUSPENDED)

    @admin.action(description="Reactivate selected tenants")
    def reactivate(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        self._set_status(request, queryset, Tenant.Status.ACTIVE)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # the change list must be "changeable" for actions to show; the form stays read-only
        return obj is None and request.user.is_superuser


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ("user", "tenant", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__email", "tenant__slug")
    list_select_related = ("user", "tenant")


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = ("name", "tenant", "display", "state", "budget_usd", "budget_period", "last_used_at", "created_at")
    list_filter = ("budget_period",)
    search_fields = ("name", "public_id", "tenant__slug")
    list_select_related = ("tenant",)
    fields = (
        "tenant",
        "name",
        "display",
        "created_by",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
        "previous_valid_until",
        "allowed_models",
        "rpm",
        "tpm",
        "budget_usd",
        "budget_period",
        "scopes",
        "tags",
    )
    readonly_fields = fields
    actions = ("revoke",)

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset.select_related("tenant"):
            services.api_key_revoke(tenant=key.tenant, key_id=key.pk, actor=request.user, request=request)
        self.message_user(request, f"{queryset.count()} key(s) revoked.", messages.SUCCESS)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return obj is None and request.user.is_superuser


@admin.register(UserProfile)
class UserProfileAdmin(ReadOnlyAdmin):
    list_display = ("user", "must_change_password")
    list_filter = ("must_change_password",)
    search_fields = ("user__email",)
