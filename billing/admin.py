"""Price book in the Django admin (platform operators): versions are added, never edited or
deleted, so every ledger row keeps pointing at the price it was charged."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone

from billing.models import Price, PriceAdjustment
from billing.services import price_adjustment_create, price_version_create
from billing.services.prices import BACKDATE_TOLERANCE


def _not_backdated(value):
    if value is not None and value < timezone.now() - BACKDATE_TOLERANCE:
        raise forms.ValidationError("A version cannot take effect in the past: usage already charged keeps its price.")
    return value


class PriceForm(forms.ModelForm):
    class Meta:
        model = Price
        fields = ["model", "input_per_mtok", "cached_input_per_mtok", "output_per_mtok", "effective_from"]

    def clean_effective_from(self):
        return _not_backdated(self.cleaned_data.get("effective_from"))


class PriceAdjustmentForm(forms.ModelForm):
    class Meta:
        model = PriceAdjustment
        fields = ["tenant", "model", "percent", "effective_from"]
        help_texts = {"percent": "Markup (+) or discount (-) in percent, e.g. 10 or -15.5"}

    def clean_effective_from(self):
        return _not_backdated(self.cleaned_data.get("effective_from"))


class AppendOnlyAdmin(admin.ModelAdmin):
    """Add and view; existing rows are read-only and cannot be deleted."""

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Price)
class PriceAdmin(AppendOnlyAdmin):
    form = PriceForm
    list_display = (
        "model",
        "effective_from",
        "input_per_mtok",
        "cached_input_per_mtok",
        "output_per_mtok",
        "created_at",
    )
    list_filter = ("model",)
    list_select_related = ("model",)
    ordering = ("model__name", "-effective_from")
    search_fields = ("model__name",)

    def save_model(self, request: HttpRequest, obj: Price, form: PriceForm, change: bool) -> None:
        created = price_version_create(
            model=obj.model,
            input_per_mtok=obj.input_per_mtok,
            cached_input_per_mtok=obj.cached_input_per_mtok,
            output_per_mtok=obj.output_per_mtok,
            effective_from=obj.effective_from,
            actor=request.user,
        )
        obj.pk, obj.created_at = created.pk, created.created_at


@admin.register(PriceAdjustment)
class PriceAdjustmentAdmin(AppendOnlyAdmin):
    form = PriceAdjustmentForm
    list_display = ("tenant", "model", "percent", "effective_from", "created_at")
    list_filter = ("tenant",)
    list_select_related = ("tenant", "model")
    ordering = ("tenant__name", "-effective_from")

    def save_model(self, request: HttpRequest, obj: PriceAdjustment, form: PriceAdjustmentForm, change: bool) -> None:
        created = price_adjustment_create(
            tenant=obj.tenant,
            model=obj.model,
            percent=obj.percent,
            effective_from=obj.effective_from,
            actor=request.user,
        )
        obj.pk, obj.created_at = created.pk, created.created_at
