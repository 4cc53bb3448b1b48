from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
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
