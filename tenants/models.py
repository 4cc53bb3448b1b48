from __future__ import annotations

import zoneinfo
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone as dj_timezone


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{value!r} is not a known timezone (e.g. Europe/Paris, UTC).") from None


class BudgetPeriod(models.TextChoices):
    DAY = "day", "Daily"
    MONTH = "month", "Monthly"
    TOTAL = "total", "Total (never resets)"


class Tenant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    slug = models.SlugField(
        max_length=50,
        unique=True,
        validators=[RegexValidator(r"^[a-z0-9][a-z0-9-]*$", "Lowercase letters, digits and dashes.")],
    )
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    created_at = models.DateTimeField(default=dj_timezone.now, editable=False)

    # Defaults every key inherits unless it overrides them. None = unlimited.
    default_rpm = models.PositiveIntegerField(null=True, blank=True)
    default_tpm = models.PositiveIntegerField(null=True, blank=True)
    rpm = models.PositiveIntegerField(null=True, blank=True, help_text="Tenant-wide requests per minute")
    tpm = models.PositiveIntegerField(null=True, blank=True, help_text="Tenant-wide tokens per minute")
    allowed_models = models.JSONField(default=list, blank=True, help_text="Empty: every enabled model")
    budget_usd = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True, validators=[MinValueValidator(Decimal(0))]
    )
    budget_period = models.CharField(max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH)
    guardrails = models.JSONField(default=dict, blank=True, help_text="detector -> off|flag|redact|block")
    cache_ttl_seconds = models.PositiveIntegerField(default=0, help_text="0 disables the response cache")
    log_prompts = models.BooleanField(default=False, help_text="Keep PII-redacted prompt text in the request log")
    request_log_retention_days = models.PositiveIntegerField(default=30)
    audit_retention_days = models.PositiveIntegerField(default=365)
    alert_webhook_url = models.URLField(blank=True)
    alert_webhook_secret = models.CharField(max_length=128, blank=True)
    alert_emails = models.JSONField(default=list, blank=True)
    alert_thresholds = models.JSONField(default=list, blank=True, help_text="Percentages, e.g. [50, 80, 100]")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    FINANCE = "finance", "Finance"
    VIEWER = "viewer", "Viewer"


class Membership(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(default=dj_timezone.now, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_user")]
        indexes = [models.Index(fields=["tenant", "role"], name="membership_tenant_role")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.role})"


class ApiKey(models.Model):
    class Scope(models.TextChoices):
        USAGE_READ = "usage:read", "Read the tenant's usage"
        AUDIT_READ = "audit:read", "Read the tenant's audit log"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    public_id = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    last4 = models.CharField(max_length=4, editable=False)
    # Rotation keeps the key id and budget; the previous secret stays valid for a grace period.
    previous_secret_hash = models.CharField(max_length=64, blank=True, editable=False)
    previous_valid_until = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=dj_timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    allowed_models = models.JSONField(default=list, blank=True, help_text="Empty: the tenant's models")
    rpm = models.PositiveIntegerField(null=True, blank=True)
    tpm = models.PositiveIntegerField(null=True, blank=True)
    budget_usd = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True, validators=[MinValueValidator(Decimal(0))]
    )
    budget_period = models.CharField(max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH)
    scopes = models.JSONField(default=list, blank=True)
    tags = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="apikey_tenant_created"),
            models.Index(fields=["tenant", "name"], name="apikey_tenant_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name} (sk-sntl-{self.public_id}-…{self.last4})"

    @property
    def display(self) -> str:
        return f"sk-sntl-{self.public_id}-…{self.last4}"

    def state_at(self, now) -> str:
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    @property
    def state(self) -> str:
        return self.state_at(dj_timezone.now())


class UserProfile(models.Model):
    """Per-user flags that are not tenant data (a user may belong to several tenants)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    must_change_password = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"profile of {self.user}"
