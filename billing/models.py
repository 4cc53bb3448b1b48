from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone

USD_PER_MTOK = {"max_digits": 12, "decimal_places": 6, "validators": [MinValueValidator(Decimal(0))]}


class Price(models.Model):
    """A price version. A price change adds a row (new ``effective_from``); rows are never edited,
    so a usage event keeps pointing at the price it was charged."""

    model = models.ForeignKey("gateway.Model", on_delete=models.PROTECT, related_name="prices")
    input_per_mtok = models.DecimalField(**USD_PER_MTOK)
    cached_input_per_mtok = models.DecimalField(**USD_PER_MTOK)
    output_per_mtok = models.DecimalField(**USD_PER_MTOK)
    effective_from = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [models.UniqueConstraint(fields=["model", "effective_from"], name="price_version_unique")]

    def __str__(self) -> str:
        return (
            f"{self.model.name} from {self.effective_from:%Y-%m-%d}: in ${self.input_per_mtok} "
            f"/ cached ${self.cached_input_per_mtok} / out ${self.output_per_mtok} per 1M"
        )


class PriceAdjustment(models.Model):
    """Per-tenant markup (+) or discount (-) in percent, versioned like prices; applied at charge
    time and recorded on the ledger row. ``model`` NULL applies to every model."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    model = models.ForeignKey("gateway.Model", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    percent = models.DecimalField(max_digits=7, decimal_places=3, validators=[MinValueValidator(Decimal(-100))])
    effective_from = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["tenant", "-effective_from"]
        indexes = [models.Index(fields=["tenant", "model", "-effective_from"], name="priceadj_tenant_model")]

    def __str__(self) -> str:
        return f"{self.percent:+}% for {self.model or 'all models'} from {self.effective_from:%Y-%m-%d}"


class UsageEvent(models.Model):
    """The ledger: append-only, exactly one row per gateway request (``request_id`` unique).

    Cost is integer micro-dollars (1 USD = 1,000,000), rounded half-up once per event, so every
    sum over the ledger is exact."""

    class Status(models.TextChoices):
        OK = "ok", "OK"
        ERROR = "error", "Upstream error"
        CLIENT_CLOSED = "client_closed", "Client disconnected"
        REJECTED = "rejected", "Rejected"

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="+")
    api_key = models.ForeignKey("tenants.ApiKey", null=True, on_delete=models.PROTECT, related_name="+")
    request_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    endpoint = models.CharField(max_length=32, default="chat.completions")
    model = models.CharField(max_length=128)
    provider = models.CharField(max_length=64, blank=True)
    route = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=1)
    prompt_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    cost_micros = models.BigIntegerField(default=0)
    price = models.ForeignKey(Price, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    adjustment_percent = models.DecimalField(max_digits=7, decimal_places=3, default=Decimal(0))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OK)
    http_status = models.PositiveSmallIntegerField(default=200)
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    estimated = models.BooleanField(default=False)
    cache_hit = models.BooleanField(default=False)
    stream = models.BooleanField(default=False)
    tags = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="usage_tenant_created"),
            models.Index(fields=["tenant", "api_key", "-created_at"], name="usage_tenant_key_created"),
            models.Index(fields=["tenant", "model", "-created_at"], name="usage_tenant_model_created"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model} {self.cost_micros}µ$"

    @property
    def cost_usd(self) -> Decimal:
        return Decimal(self.cost_micros) / Decimal(1_000_000)


# --------------------------------------------------------------------------- rollups
class UsageTotals(models.Model):
    """Sums over ledger rows. Rollups are derived data: always recomputed from the ledger, never
    incremented, so rerunning any window gives the same rows."""

    requests = models.PositiveBigIntegerField(default=0)
    error_requests = models.PositiveBigIntegerField(default=0)
    cache_hits = models.PositiveBigIntegerField(default=0)
    estimated_requests = models.PositiveBigIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    cached_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    reasoning_tokens = models.PositiveBigIntegerField(default=0)
    cost_micros = models.BigIntegerField(default=0)
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True

    @property
    def cost_usd(self) -> Decimal:
        return Decimal(self.cost_micros) / Decimal(1_000_000)


def _dims_unique(bucket: str, name: str) -> models.UniqueConstraint:
    # NULL key / price are folded to 0 so the constraint also holds for them (portable to SQLite,
    # unlike NULLS NOT DISTINCT).
    return models.UniqueConstraint(
        models.F("tenant"),
        models.F(bucket),
        Coalesce(models.F("api_key"), models.Value(0)),
        models.F("model"),
        Coalesce(models.F("price"), models.Value(0)),
        models.F("adjustment_percent"),
        models.F("tags"),
        name=name,
    )


class HourlyUsage(UsageTotals):
    """Per tenant x UTC hour x key x model x price version (and tenant adjustment) x tag set."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False)
    hour = models.DateTimeField()
    api_key = models.ForeignKey("tenants.ApiKey", null=True, on_delete=models.PROTECT, related_name="+")
    model = models.CharField(max_length=128)
    price = models.ForeignKey(Price, null=True, on_delete=models.PROTECT, related_name="+")
    adjustment_percent = models.DecimalField(max_digits=7, decimal_places=3, default=Decimal(0))
    tags = models.JSONField(default=dict)

    class Meta:
        # the unique index (tenant, hour, ...) also serves range scans by tenant and hour
        constraints = [_dims_unique("hour", "hourly_usage_dims")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.model} {self.cost_micros}µ$"


class DailyUsage(UsageTotals):
    """Per tenant x local day (the tenant's timezone) x key x model x price version (and tenant
    adjustment) x tag set.

    The cost pages, the /v1/usage API, exports and statements read these rows."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False)
    day = models.DateField()
    api_key = models.ForeignKey("tenants.ApiKey", null=True, on_delete=models.PROTECT, related_name="+")
    model = models.CharField(max_length=128)
    price = models.ForeignKey(Price, null=True, on_delete=models.PROTECT, related_name="+")
    adjustment_percent = models.DecimalField(max_digits=7, decimal_places=3, default=Decimal(0))
    tags = models.JSONField(default=dict)

    class Meta:
        # the unique index (tenant, day, ...) also serves range scans by tenant and day
        constraints = [_dims_unique("day", "daily_usage_dims")]
        indexes = [
            models.Index(fields=["tenant", "api_key", "day"], name="daily_usage_tenant_key_day"),
            models.Index(fields=["tenant", "model", "day"], name="daily_usage_tenant_model_day"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.model} {self.cost_micros}µ$"


class DailyBreakdown(UsageTotals):
    """The cost pages' read model, derived from ``DailyUsage``: per tenant day, usage by one
    dimension at a time, so a page reads a few hundred rows for a year instead of every
    key x model x tag combination.

    ``dimension`` is ``total`` (value ""), ``model`` (model name), ``key`` (API key id, "" for
    none) or ``tag:<tag key>`` (the tag's value; untagged requests are the total minus these)."""

    TOTAL = "total"
    MODEL = "model"
    KEY = "key"
    TAG_PREFIX = "tag:"

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False)
    day = models.DateField()
    dimension = models.CharField(max_length=80)
    value = models.CharField(max_length=255, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "dimension", "day", "value"], name="daily_breakdown_unique")
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.dimension}={self.value} {self.cost_micros}µ$"


class PendingRollup(models.Model):
    """A ledger hour whose rollups are stale. Written in the same transaction as the events it
    covers; the rollup job deletes exactly the rows it read, so a mark written while it runs survives
    and is processed next time (no lost update)."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["tenant", "hour"], name="pending_rollup_tenant_hour")]

    def __str__(self) -> str:
        return f"tenant {self.tenant_id} {self.hour:%Y-%m-%d %H}h"


class MonthlyStatement(UsageTotals):
    """A closed month, frozen: written once when the month (in the tenant's timezone) has ended and
    never recomputed. ``lines`` itemises cost per model and price version, ``keys`` per API key."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="+")
    month = models.DateField(help_text="First day of the month, in the tenant's timezone")
    time_zone = models.CharField(max_length=64)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    lines = models.JSONField(default=list)
    keys = models.JSONField(default=list)
    closed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-month"]
        constraints = [models.UniqueConstraint(fields=["tenant", "month"], name="statement_tenant_month")]

    def __str__(self) -> str:
        return f"statement {self.month:%Y-%m} tenant {self.tenant_id}"


# --------------------------------------------------------------------------- budget alerts
class BudgetAlert(models.Model):
    """One threshold crossed in one budget period: the unique constraint makes each fire once."""

    class Scope(models.TextChoices):
        TENANT = "tenant", "Tenant"
        KEY = "key", "API key"

    class Delivery(models.TextChoices):
        NOT_CONFIGURED = "not_configured", "Not configured"
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    scope = models.CharField(max_length=8, choices=Scope.choices)
    api_key = models.ForeignKey("tenants.ApiKey", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    period = models.CharField(max_length=8)
    period_start = models.DateField()
    threshold = models.PositiveSmallIntegerField()
    budget_micros = models.BigIntegerField()
    spent_micros = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    webhook_status = models.CharField(max_length=16, choices=Delivery.choices, default=Delivery.NOT_CONFIGURED)
    webhook_attempts = models.PositiveSmallIntegerField(default=0)
    webhook_last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    webhook_error = models.CharField(max_length=300, blank=True)
    webhook_delivered_at = models.DateTimeField(null=True, blank=True)
    email_status = models.CharField(max_length=16, choices=Delivery.choices, default=Delivery.NOT_CONFIGURED)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                models.F("tenant"),
                models.F("scope"),
                Coalesce(models.F("api_key"), models.Value(0)),
                models.F("period_start"),
                models.F("threshold"),
                name="budget_alert_once",
            )
        ]
        indexes = [models.Index(fields=["tenant", "-created_at", "-id"], name="budget_alert_tenant_created")]

    def __str__(self) -> str:
        return f"{self.scope} budget {self.threshold}% from {self.period_start}"

    @property
    def spent_usd(self) -> Decimal:
        return Decimal(self.spent_micros) / Decimal(1_000_000)

    @property
    def budget_usd(self) -> Decimal:
        return Decimal(self.budget_micros) / Decimal(1_000_000)
