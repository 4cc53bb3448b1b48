"""Console forms: parsing and field validation only; writes happen in tenants.services."""

from __future__ import annotations

import functools
import hashlib
import zoneinfo
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm, SetPasswordForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.forms.utils import flatatt
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from sentinel_site.redis import rkey
from tenants.models import ApiKey, BudgetPeriod, Role, Tenant

LOGIN_MAX_FAILURES = 5
LOGIN_WINDOW_SECONDS = 15 * 60
GUARDRAIL_DETECTORS = (
    ("pii", "Personal data (PII)", "Emails, phone numbers, card and IBAN numbers in prompts."),
    ("injection", "Prompt injection", "Attempts to override the system prompt or exfiltrate instructions."),
    ("secrets", "Secrets", "API keys, tokens and private keys pasted into prompts."),
)
GUARDRAIL_ACTIONS = (
    ("off", "Off"),
    ("flag", "Flag (log only)"),
    ("redact", "Redact before sending"),
    ("block", "Block the request"),
)
ROTATION_GRACE = (
    ("0", "Immediately — the old secret stops working now"),
    ("3600", "After 1 hour"),
    ("86400", "After 24 hours"),
    ("604800", "After 7 days"),
)


class StyledFormMixin:
    """Adds the accessibility attributes the design system expects (aria-invalid / describedby)."""

    def mark_errors(self) -> None:
        for name, field in self.fields.items():  # type: ignore[attr-defined]
            bound = self[name]  # type: ignore[index]
            described = []
            if field.help_text:
                described.append(f"{bound.auto_id}_help")
            if bound.errors:
                field.widget.attrs["aria-invalid"] = "true"
                described.append(f"{bound.auto_id}_error")
            if described:
                field.widget.attrs["aria-describedby"] = " ".join(described)

    def full_clean(self) -> None:
        super().full_clean()  # type: ignore[misc]
        self.mark_errors()


def apply_validation_error(form: forms.Form, error: ValidationError) -> None:
    """Attach a model/service ValidationError to the form: per field where the form has the field."""
    if hasattr(error, "error_dict"):
        for field, messages in error.message_dict.items():
            form.add_error(field if field in form.fields else None, messages)
    else:
        form.add_error(None, error.messages)
    if isinstance(form, StyledFormMixin):
        form.mark_errors()


# --------------------------------------------------------------------------- sign-in
def _client_ip(request: Any) -> str:
    return (getattr(request, "META", {}) or {}).get("REMOTE_ADDR", "") or "unknown"


def login_throttle_key(username: str, ip: str) -> str:
    digest = hashlib.sha256(f"{username.strip().lower()}|{ip}".encode()).hexdigest()[:32]
    return rkey("login-failures", digest)


class ThrottledAuthenticationForm(StyledFormMixin, AuthenticationForm):
    """Django's login form plus a per (username, IP) failure counter in the cache: after
    ``LOGIN_MAX_FAILURES`` failures within ``LOGIN_WINDOW_SECONDS`` sign-in is refused (a form error)."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "Too many failed sign-in attempts. Wait 15 minutes or reset your password.",
    }

    def __init__(self, request: Any = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(request, *args, **kwargs)
        self.fields["username"].label = "Email"
        self.fields["username"].widget.attrs.update({"autocomplete": "username", "autofocus": True})
        self.fields["password"].widget.attrs["autocomplete"] = "current-password"

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        key = login_throttle_key(username, _client_ip(self.request))
        if (cache.get(key) or 0) >= LOGIN_MAX_FAILURES:
            raise ValidationError(self.error_messages["throttled"], code="throttled")
        try:
            cleaned = super().clean()
        except ValidationError:
            failures = self._count_failure(key)
            if failures >= LOGIN_MAX_FAILURES:
                from tenants.services import login_throttled_record

                if failures == LOGIN_MAX_FAILURES:
                    login_throttled_record(username=username, request=self.request)
                raise ValidationError(self.error_messages["throttled"], code="throttled") from None
            raise
        cache.delete(key)
        return cleaned

    @staticmethod
    def _count_failure(key: str) -> int:
        if cache.add(key, 1, timeout=LOGIN_WINDOW_SECONDS):
            return 1
        try:
            return cache.incr(key)
        except ValueError:  # expired between add() and incr()
            cache.add(key, 1, timeout=LOGIN_WINDOW_SECONDS)
            return 1


PASSWORD_HELP = "At least 10 characters. Not a common password, not only digits, and not close to your email."


class ConsolePasswordChangeForm(StyledFormMixin, PasswordChangeForm):
    def save(self, commit: bool = True):  # the service sets the password, clears the flag and audits
        from tenants.services import user_password_set

        user_password_set(
            user=self.user, password=self.cleaned_data["new_password1"], reason="changed", request=self.request
        )
        return self.user

    def __init__(self, user: Any, *args: Any, request: Any = None, **kwargs: Any) -> None:
        self.request = request
        super().__init__(user, *args, **kwargs)
        self.fields["old_password"].label = "Current password"
        self.fields["new_password1"].help_text = PASSWORD_HELP
        self.fields["new_password2"].label = "Repeat the new password"


class ConsoleSetPasswordForm(StyledFormMixin, SetPasswordForm):
    def __init__(self, user: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(user, *args, **kwargs)
        self.fields["new_password1"].help_text = PASSWORD_HELP
        self.fields["new_password2"].label = "Repeat the new password"

    def save(self, commit: bool = True):
        from tenants.services import user_password_set

        user_password_set(user=self.user, password=self.cleaned_data["new_password1"], reason="reset")
        return self.user


# --------------------------------------------------------------------------- API keys
def _money_initial(value: Decimal | None) -> Decimal | None:
    """Stored budgets have 6 decimals; forms show cents unless sub-cent digits matter."""
    if value is None:
        return None
    cents = value.quantize(Decimal("0.01"))
    return cents if cents == value else value.normalize()


def _split_list(value: str) -> list[str]:
    return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]


class ApiKeyForm(StyledFormMixin, forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses this key, e.g. “support-bot prod”.")
    allowed_models = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Allowed models",
        help_text="None ticked: every model the tenant allows.",
    )
    rpm = forms.IntegerField(
        required=False, min_value=1, label="Requests per minute", help_text="Empty: the tenant default."
    )
    tpm = forms.IntegerField(
        required=False, min_value=1, label="Tokens per minute", help_text="Empty: the tenant default."
    )
    budget_usd = forms.DecimalField(
        required=False,
        min_value=Decimal(0),
        max_digits=14,
        decimal_places=2,
        label="Budget (USD)",
        help_text="Requests are refused once the budget for the period is spent. Empty: no key budget.",
    )
    budget_period = forms.ChoiceField(choices=BudgetPeriod.choices, initial=BudgetPeriod.MONTH, label="Budget period")
    expires_on = forms.DateField(
        required=False,
        label="Expires on",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The key stops working at the start of this day (tenant timezone). Empty: never.",
    )
    scopes = forms.MultipleChoiceField(
        required=False,
        choices=ApiKey.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        label="Read scopes",
        help_text="Let this key read the tenant's usage or audit log through the API.",
    )

    def __init__(self, *args: Any, tenant: Tenant, model_choices: list[str], **kwargs: Any) -> None:
        self.tenant = tenant
        super().__init__(*args, **kwargs)
        self.fields["allowed_models"].choices = [(m, m) for m in model_choices]
        self.fields["name"].widget.attrs["autocomplete"] = "off"

    @classmethod
    def initial_for(cls, key: ApiKey, tenant: Tenant) -> dict[str, Any]:
        expires_on = None
        if key.expires_at is not None:
            expires_on = key.expires_at.astimezone(zoneinfo.ZoneInfo(tenant.timezone)).date()
        return {
            "name": key.name,
            "allowed_models": key.allowed_models,
            "rpm": key.rpm,
            "tpm": key.tpm,
            "budget_usd": _money_initial(key.budget_usd),
            "budget_period": key.budget_period,
            "expires_on": expires_on,
            "scopes": key.scopes,
        }

    def clean_expires_on(self):
        day = self.cleaned_data.get("expires_on")
        if day is None:
            return None
        tz = zoneinfo.ZoneInfo(self.tenant.timezone)
        if day <= timezone.now().astimezone(tz).date() and (
            "expires_on" in self.changed_data or not self.initial.get("expires_on")
        ):
            raise ValidationError("Pick a day after today.")
        return day

    def to_changes(self) -> dict[str, Any]:
        data = self.cleaned_data
        expires_at = None
        if data["expires_on"] is not None:
            expires_at = datetime.combine(data["expires_on"], time(0), tzinfo=zoneinfo.ZoneInfo(self.tenant.timezone))
        return {
            "name": data["name"].strip(),
            "allowed_models": sorted(set(data["allowed_models"])),
            "rpm": data["rpm"],
            "tpm": data["tpm"],
            "budget_usd": data["budget_usd"],
            "budget_period": data["budget_period"],
            "expires_at": expires_at,
            "scopes": sorted(set(data["scopes"])),
        }


class ApiKeyRotateForm(StyledFormMixin, forms.Form):
    grace = forms.TypedChoiceField(
        choices=ROTATION_GRACE,
        coerce=int,
        initial="86400",
        label="Old secret stops working",
        help_text="Keep the old secret valid long enough to deploy the new one everywhere.",
    )

    def grace_delta(self) -> timedelta:
        return timedelta(seconds=self.cleaned_data["grace"])


# --------------------------------------------------------------------------- members
class InviteForm(StyledFormMixin, forms.Form):
    email = forms.EmailField(label="Email address", help_text="We send them a link valid for 3 days.")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["email"].widget.attrs.update({"autocomplete": "off", "placeholder": "name@company.com"})


class MemberRoleForm(StyledFormMixin, forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class AcceptInvitationForm(StyledFormMixin, forms.Form):
    """A new user picks their password while accepting an invitation."""

    password1 = forms.CharField(
        label="Choose a password",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        strip=False,
        help_text=PASSWORD_HELP,
    )
    password2 = forms.CharField(
        label="Repeat the password", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}), strip=False
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("password1") and data.get("password2") and data["password1"] != data["password2"]:
            self.add_error("password2", "The two passwords differ.")
        return data


# --------------------------------------------------------------------------- tenant settings
class SettingsSectionForm(StyledFormMixin, forms.Form):
    """One card of the settings page. ``fields_from(tenant)`` gives initial values, ``to_changes()``
    the keyword arguments for ``tenant_update``."""

    section: str = ""
    title: str = ""
    description: str = ""

    @classmethod
    def initial_from(cls, tenant: Tenant) -> dict[str, Any]:
        return {name: getattr(tenant, name) for name in cls.base_fields}

    def to_changes(self) -> dict[str, Any]:
        return dict(self.cleaned_data)


class PlainSelect(forms.Select):
    """A single-choice <select> rendered in Python. Django renders every option through a template
    (~0.15 ms each): for the ~600 timezones that alone cost 100 ms per settings page."""

    def render(self, name: str, value: Any, attrs: dict | None = None, renderer: Any = None) -> str:
        selected = "" if value is None else str(value)
        options = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            ((v, mark_safe(" selected") if str(v) == selected else "", label) for v, label in self.choices),
        )
        return format_html(
            '<select name="{}"{}>{}</select>', name, flatatt(self.build_attrs(self.attrs, attrs)), options
        )


@functools.cache
def _timezone_choices() -> list[tuple[str, str]]:
    # available_timezones() walks the tz database on disk: ~100 ms, so once per process
    return [(z, z) for z in sorted(zoneinfo.available_timezones())]


class GeneralSettingsForm(SettingsSectionForm):
    section = "general"
    title = "General"
    description = "The tenant's display name and the calendar its days and months follow."

    name = forms.CharField(max_length=200)
    timezone = forms.ChoiceField(
        widget=PlainSelect,
        help_text="“Today” on the overview and daily/monthly budgets start at midnight in this timezone.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["timezone"].choices = _timezone_choices()


class LimitsSettingsForm(SettingsSectionForm):
    section = "limits"
    title = "Limits and budget"
    description = "Tenant-wide caps, and the defaults a key gets when it sets no limit of its own."

    default_rpm = forms.IntegerField(required=False, min_value=1, label="Default requests/min per key")
    default_tpm = forms.IntegerField(required=False, min_value=1, label="Default tokens/min per key")
    rpm = forms.IntegerField(required=False, min_value=1, label="Tenant requests/min")
    tpm = forms.IntegerField(required=False, min_value=1, label="Tenant tokens/min")
    budget_usd = forms.DecimalField(
        required=False,
        min_value=Decimal(0),
        max_digits=14,
        decimal_places=2,
        label="Budget (USD)",
        help_text="Empty: no tenant budget.",
    )
    budget_period = forms.ChoiceField(choices=BudgetPeriod.choices, label="Budget period")

    @classmethod
    def initial_from(cls, tenant: Tenant) -> dict[str, Any]:
        return {**super().initial_from(tenant), "budget_usd": _money_initial(tenant.budget_usd)}


class ModelsSettingsForm(SettingsSectionForm):
    section = "models"
    title = "Allowed models"
    description = "Which catalog models the tenant's keys may call. None ticked: every enabled model."

    allowed_models = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Allowed models"
    )

    def __init__(self, *args: Any, model_choices: list[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = set(self.initial.get("allowed_models") or [])
        names = sorted(set(model_choices) | current)
        self.fields["allowed_models"].choices = [(m, m) for m in names]

    def to_changes(self) -> dict[str, Any]:
        return {"allowed_models": sorted(set(self.cleaned_data["allowed_models"]))}


class GuardrailsSettingsForm(SettingsSectionForm):
    section = "guardrails"
    title = "Guardrails"
    description = "What the gateway does when a detector fires on a prompt."

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, label, help_text in GUARDRAIL_DETECTORS:
            self.fields[name] = forms.ChoiceField(
                choices=GUARDRAIL_ACTIONS, label=label, help_text=help_text, initial="off"
            )

    @classmethod
    def initial_from(cls, tenant: Tenant) -> dict[str, Any]:
        policies = tenant.guardrails or {}
        return {name: policies.get(name, "off") for name, _, _ in GUARDRAIL_DETECTORS}

    def to_changes(self) -> dict[str, Any]:
        return {"guardrails": {name: self.cleaned_data[name] for name, _, _ in GUARDRAIL_DETECTORS}}


class CacheSettingsForm(SettingsSectionForm):
    section = "cache"
    title = "Response cache and logging"
    description = "Identical requests within the TTL are answered from the cache, at no cost."

    cache_ttl_seconds = forms.IntegerField(
        min_value=0, max_value=7 * 86400, label="Cache TTL (seconds)", help_text="0 disables the response cache."
    )
    log_prompts = forms.BooleanField(
        required=False,
        label="Keep prompt text in the request log",
        help_text="PII is redacted before storing. Off: only metadata is logged.",
    )
    request_log_retention_days = forms.IntegerField(min_value=1, max_value=3650, label="Request log retention (days)")
    audit_retention_days = forms.IntegerField(min_value=30, max_value=3650, label="Audit log retention (days)")


class AlertsSettingsForm(SettingsSectionForm):
    section = "alerts"
    title = "Budget alerts"
    description = "Who hears about it when spend crosses a threshold of the budget."

    alert_thresholds = forms.CharField(
        required=False,
        label="Thresholds (% of budget)",
        help_text="Comma-separated, e.g. 50, 80, 100.",
    )
    alert_emails = forms.CharField(
        required=False,
        label="Email recipients",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One address per line.",
    )
    alert_webhook_url = forms.URLField(required=False, label="Webhook URL", assume_scheme="https")
    alert_webhook_secret = forms.CharField(
        required=False,
        label="Webhook signing secret",
        max_length=128,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}, render_value=False),
        help_text="Used to sign webhook bodies (HMAC-SHA256). Leave empty to keep the current secret.",
    )
    clear_webhook_secret = forms.BooleanField(required=False, label="Remove the signing secret")

    @classmethod
    def initial_from(cls, tenant: Tenant) -> dict[str, Any]:
        return {
            "alert_thresholds": ", ".join(str(t) for t in tenant.alert_thresholds or []),
            "alert_emails": "\n".join(tenant.alert_emails or []),
            "alert_webhook_url": tenant.alert_webhook_url,
        }

    def clean_alert_thresholds(self) -> list[int]:
        values = []
        for part in _split_list(self.cleaned_data.get("alert_thresholds") or ""):
            try:
                value = int(part.rstrip("%"))
            except ValueError:
                raise ValidationError(f"“{part}” is not a whole number.") from None
            if not 1 <= value <= 1000:
                raise ValidationError("Thresholds are between 1 and 1000 percent.")
            values.append(value)
        return sorted(set(values))

    def clean_alert_emails(self) -> list[str]:
        emails = []
        for part in _split_list(self.cleaned_data.get("alert_emails") or ""):
            try:
                validate_email(part)
            except ValidationError:
                raise ValidationError(f"“{part}” is not an email address.") from None
            emails.append(part.lower())
        return list(dict.fromkeys(emails))

    def to_changes(self) -> dict[str, Any]:
        data = self.cleaned_data
        changes = {
            "alert_thresholds": data["alert_thresholds"],
            "alert_emails": data["alert_emails"],
            "alert_webhook_url": data["alert_webhook_url"],
        }
        if data["clear_webhook_secret"]:
            changes["alert_webhook_secret"] = ""
        elif data["alert_webhook_secret"]:
            changes["alert_webhook_secret"] = data["alert_webhook_secret"]
        return changes


SETTINGS_SECTIONS: dict[str, type[SettingsSectionForm]] = {
    form.section: form
    for form in (
        GeneralSettingsForm,
        LimitsSettingsForm,
        ModelsSettingsForm,
        GuardrailsSettingsForm,
        CacheSettingsForm,
        AlertsSettingsForm,
    )
}


class PlatformTenantStatusForm(forms.Form):
    status = forms.ChoiceField(choices=Tenant.Status.choices)
