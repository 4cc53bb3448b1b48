"""Audit's Celery tasks (beat schedule in settings.CELERY_BEAT_SCHEDULE). Each is safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from audit import services
from tenants.models import Tenant

log = logging.getLogger("sentinel.audit.tasks")


def _tenants(tenant_id: int | None) -> list[Tenant]:
    qs = Tenant.objects.order_by("pk")
    return list(qs.filter(pk=tenant_id) if tenant_id is not None else qs)


@shared_task(ignore_result=True)
def apply_audit_retention(tenant_id: int | None = None) -> int:
    """Per-tenant ``audit_retention_days`` (and the platform chain's setting when run for all):
    removes old segments and anchors each chain. Returns how many events were removed."""
    removed = 0
    for tenant in _tenants(tenant_id):
        result = services.audit_retention_apply(tenant=tenant, retention_days=tenant.audit_retention_days)
        if result is not None:
            log.info(
                "audit retention %s: removed seq %s..%s", tenant.slug, result.removed_from_seq, result.removed_to_seq
            )
            removed += result.removed_count
    if tenant_id is None:
        days = settings.SENTINEL_PLATFORM_AUDIT_RETENTION_DAYS
        result = services.audit_retention_apply(tenant=None, retention_days=days)
        if result is not None:
            removed += result.removed_count
    return removed


@shared_task(ignore_result=True)
def purge_request_log(tenant_id: int | None = None) -> int:
    """Delete request-log rows older than each tenant's ``request_log_retention_days``."""
    return sum(services.request_log_purge(tenant=tenant) for tenant in _tenants(tenant_id))
