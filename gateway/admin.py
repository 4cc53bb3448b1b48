"""Django admin for the platform catalog (providers, models, routes).

The catalog file (``manage.py catalog_sync``) is the source of truth for prices and structure; here
operators can switch things on and off, tune routing and store a provider credential. Every change
is audited on the platform chain and makes every process reload its catalog. A stored credential is
write-only: it is encrypted on save and never displayed."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import transaction
from django.http import HttpRequest

from audit.services import record
from gateway import credentials
from gateway.catalog_sync import catalog_changed
from gateway.models import Model, Provider, Route


class AuditedCatalogAdmin(admin.ModelAdmin):
    audited_fields: tuple[str, ...] = ()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # structure comes from the catalog file

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: forms.ModelForm, change: bool) -> None:
        before = {f: form.initial.get(f) for f in self.audited_fields if f in form.changed_data}
        after = {f: getattr(obj, f) for f in before}
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            extra = self.extra_changes(obj, form)
            if before or extra:
                record(
                    tenant=None,
                    action="catalog.changed",
                    actor=request.user,
                    target=obj,
                    request=request,
                    before=before,
                    after={**after, **extra},
                )
            transaction.on_commit(catalog_changed)

    def extra_changes(self, obj: Any, form: forms.ModelForm) -> dict[str, Any]:
        return {}


class ProviderForm(forms.ModelForm):
    new_api_key = forms.CharField(
        required=False,
        label="New credential",
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted (SENTINEL_CREDENTIALS_KEY) and never shown again. Leave empty to keep the current one.",
    )
    clear_api_key = forms.BooleanField(required=False, label="Remove the stored credential")

    class Meta:
        model = Provider
        fields = ("kind", "base_url", "api_key_env", "enabled")

    def clean_new_api_key(self) -> str:
        value = self.cleaned_data.get("new_api_key") or ""
        if value:
            try:
                return credentials.encrypt(value)
            except credentials.CredentialMissing as error:
                raise forms.ValidationError(str(error)) from None
        return ""


@admin.register(Provider)
class ProviderAdmin(AuditedCatalogAdmin):
    form = ProviderForm
    list_display = ("name", "kind", "base_url", "enabled", "credential")
    list_filter = ("kind", "enabled")
    search_fields = ("name",)
    readonly_fields = ("name", "credential", "created_at")
    fields = ("name", "kind", "base_url", "api_key_env", "enabled", "credential", "new_api_key", "clear_api_key")
    audited_fields = ("kind", "base_url", "api_key_env", "enabled")

    @admin.display(description="Credential")
    def credential(self, obj: Provider) -> str:
        if obj.encrypted_api_key:
            return "stored (encrypted)"
        if obj.api_key_env:
            return f"from ${obj.api_key_env}"
        return "none"

    def save_model(self, request: HttpRequest, obj: Provider, form: forms.ModelForm, change: bool) -> None:
        if form.cleaned_data.get("clear_api_key"):
            obj.encrypted_api_key = ""
        elif form.cleaned_data.get("new_api_key"):
            obj.encrypted_api_key = form.cleaned_data["new_api_key"]
        super().save_model(request, obj, form, change)

    def extra_changes(self, obj: Provider, form: forms.ModelForm) -> dict[str, Any]:
        if form.cleaned_data.get("clear_api_key"):
            return {"credential_change": "removed"}
        if form.cleaned_data.get("new_api_key"):
            return {"credential_change": "replaced"}
        return {}


class RouteInline(admin.TabularInline):
    model = Route
    extra = 0
    fields = ("provider", "upstream_model", "priority", "weight", "timeout_seconds", "enabled")
    readonly_fields = ("provider", "upstream_model")
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Model)
class ModelAdmin(AuditedCatalogAdmin):
    list_display = ("name", "kind", "enabled", "max_output_tokens")
    list_filter = ("kind", "enabled")
    search_fields = ("name",)
    fields = ("name", "kind", "enabled", "max_output_tokens")
    readonly_fields = ("name", "kind")
    audited_fields = ("enabled", "max_output_tokens")
    inlines = (RouteInline,)

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        with transaction.atomic():
            for inline_form in formset.forms:
                if inline_form.has_changed() and inline_form.instance.pk:
                    changed = inline_form.changed_data
                    record(
                        tenant=None,
                        action="catalog.changed",
                        actor=request.user,
                        target=inline_form.instance,
                        request=request,
                        before={f: inline_form.initial.get(f) for f in changed},
                        after={f: inline_form.cleaned_data.get(f) for f in changed},
                    )
            super().save_formset(request, form, formset, change)
            transaction.on_commit(catalog_changed)


@admin.register(Route)
class RouteAdmin(AuditedCatalogAdmin):
    list_display = ("model", "provider", "upstream_model", "priority", "weight", "timeout_seconds", "enabled")
    list_filter = ("enabled", "provider")
    search_fields = ("model__name", "upstream_model")
    list_select_related = ("model", "provider")
    fields = ("model", "provider", "upstream_model", "priority", "weight", "timeout_seconds", "enabled")
    readonly_fields = ("model", "provider", "upstream_model")
    audited_fields = ("priority", "weight", "timeout_seconds", "enabled")
