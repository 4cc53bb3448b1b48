"""A tenant's console-visible state, to prove that a refused request changed nothing."""

from __future__ import annotations

from audit.models import AuditEvent
from tenants.models import ApiKey, Membership, Tenant
from tenants.services import TENANT_SETTINGS_FIELDS


def tenant_state(tenant: Tenant) -> dict:
    fresh = Tenant.objects.get(pk=tenant.pk)
    return {
        "tenant": {f: getattr(fresh, f) for f in (*TENANT_SETTINGS_FIELDS, "status")},
        "keys": list(
            ApiKey.objects.filter(tenant=tenant)
            .order_by("pk")
            .values("pk", "name", "secret_hash", "revoked_at", "rpm", "tpm", "budget_usd", "allowed_models")
        ),
        "members": list(Membership.objects.filter(tenant=tenant).order_by("pk").values("pk", "user_id", "role")),
        "audit": AuditEvent.objects.filter(tenant=tenant).count(),
    }
