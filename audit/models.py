from __future__ import annotations

from django.db import models
from django.utils import timezone

# Actions written across the code base, offered as suggestions by the search form. Not a whitelist:
# ``record`` accepts any readable dotted ``<entity>.<past-tense>`` name.
KNOWN_ACTIONS = (
    "api_key.created",
    "api_key.revoked",
    "api_key.rotated",
    "api_key.updated",
    "audit.retention_applied",
    "auth.failed",
    "budget.changed",
    "budget.threshold_crossed",
    "catalog.changed",
    "export.downloaded",
    "guardrail.blocked",
    "guardrail.flagged",
    "guardrail.redacted",
    "login.failed",
    "login.succeeded",
    "logout.succeeded",
    "member.added",
    "member.invited",
    "member.removed",
    "member.role_changed",
    "price.changed",
    "price.created",
    "price_adjustment.created",
    "statement.closed",
    "tenant.created",
    "tenant.deleted",
    "tenant.reactivated",
    "tenant.settings_changed",
    "tenant.suspended",
    "user.created",
    "user.login_throttled",
    "user.password_changed",
    "user.password_reset",
)


class ActorType(models.TextChoices):
    USER = "user", "User"
    API_KEY = "api_key", "API key"
    SYSTEM = "system", "System"


class AuditEvent(models.Model):
    """Append-only and hash-chained per tenant (``tenant`` NULL = the platform chain).

    ``hash = sha256(prev_hash || canonical content)``; a PostgreSQL trigger refuses UPDATE and
    DELETE except inside the retention job. See ``audit.services.record`` and
    ``audit.selectors.audit_chain_verify``.
    """

    tenant = models.ForeignKey("tenants.Tenant", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    seq = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-seq"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "seq"], name="audit_tenant_seq"),
            # NULLs are distinct in a unique index: the platform chain needs its own.
            models.UniqueConstraint(fields=["seq"], condition=models.Q(tenant__isnull=True), name="audit_platform_seq"),
        ]
        # Search pages are keyset-paginated on ``seq`` (newest first), so filters index with it.
        # The trigram index for free text lives in migration 0003 (PostgreSQL only).
        indexes = [
            models.Index(fields=["tenant", "created_at", "seq"], name="audit_tenant_created_seq"),
            models.Index(fields=["tenant", "action", "-seq"], name="audit_tenant_action"),
            models.Index(fields=["tenant", "actor_id", "-seq"], name="audit_tenant_actor"),
            models.Index(fields=["tenant", "target_type", "target_id", "-seq"], name="audit_tenant_target"),
            models.Index(fields=["tenant", "target_id", "-seq"], name="audit_tenant_target_id"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} by {self.actor_label or self.actor_type}"


class RequestLog(models.Model):
    """Metadata of one gateway request (written with its ledger row, kept for the tenant's
    ``request_log_retention_days``). ``prompt_text`` is empty unless the tenant opted in to
    ``log_prompts``, and then holds the gateway's PII-redacted text."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    request_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    api_key = models.ForeignKey("tenants.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    key_public_id = models.CharField(max_length=16, blank=True)
    endpoint = models.CharField(max_length=32, blank=True)
    model = models.CharField(max_length=128)
    provider = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16)
    http_status = models.PositiveSmallIntegerField(default=200)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost_micros = models.BigIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    stream = models.BooleanField(default=False)
    cache_hit = models.BooleanField(default=False)
    guardrail_flags = models.JSONField(default=list, blank=True)
    error_type = models.CharField(max_length=64, blank=True)
    prompt_text = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "-created_at", "-id"], name="reqlog_tenant_created"),
            models.Index(fields=["tenant", "key_public_id", "-created_at"], name="reqlog_tenant_key"),
            models.Index(fields=["tenant", "model", "-created_at"], name="reqlog_tenant_model"),
            models.Index(fields=["tenant", "status", "-created_at"], name="reqlog_tenant_status"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model} {self.status}"
