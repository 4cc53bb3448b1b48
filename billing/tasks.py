"""Billing's Celery tasks (beat schedule in settings.CELERY_BEAT_SCHEDULE). Each is safe to run twice."""

from __future__ import annotations

import logging
from dataclasses import asdict

from celery import shared_task
from celery.signals import worker_shutting_down
from django.conf import settings

from billing import selectors, services
from billing.errors import WebhookDeliveryFailed
from tenants.models import Tenant

log = logging.getLogger("sentinel.billing.tasks")

WEBHOOK_MAX_RETRIES = 8
WEBHOOK_BACKOFF_BASE = 5  # seconds: 5, 10, 20, … capped at an hour


@shared_task(ignore_result=True)
def drain_usage_spool(max_seconds: float = 1.5) -> dict:
    return asdict(services.usage_spool_drain(max_seconds=max_seconds))


@shared_task(ignore_result=True)
def rollup_recent_usage() -> dict:
    return asdict(services.usage_rollup_pending())


@shared_task(ignore_result=True)
def close_monthly_statements() -> int:
    return len(services.statements_close_due())


@shared_task(ignore_result=True)
def check_budget_alerts() -> int:
    services.usage_rollup_pending()  # budgets are read from the rollups: bring them up to date first
    fired = 0
    for tenant in selectors.tenants_with_budgets():
        fired += len(services.budget_alerts_check(tenant=tenant))
    return fired


@shared_task(bind=True, max_retries=WEBHOOK_MAX_RETRIES, ignore_result=True)
def send_budget_alert(self, alert_id: int, tenant_id: int) -> None:
    tenant = Tenant.objects.get(pk=tenant_id)
    alert = selectors.budget_alert_get(tenant=tenant, alert_id=alert_id)
    services.budget_alert_email(tenant=tenant, alert=alert)
    attempt = self.request.retries
    while True:
        try:
            services.budget_alert_webhook(tenant=tenant, alert=alert, last_attempt=attempt >= self.max_retries)
            return
        except WebhookDeliveryFailed as exc:
            if not self.request.is_eager:
                countdown = webhook_backoff(attempt)
                log.info("budget alert %s: webhook failed (%s), retry in %ss", alert_id, exc, countdown)
                raise self.retry(exc=exc, countdown=countdown) from None
            # Eager (embedded default, tests): there is no broker to schedule the retry on.
            attempt += 1


def webhook_backoff(retries: int) -> int:
    """Seconds before retry number ``retries + 1``: 5, 10, 20, ... capped at an hour."""
    return min(3600, WEBHOOK_BACKOFF_BASE * 2**retries)


@worker_shutting_down.connect
def _drain_spool_on_shutdown(**kwargs) -> None:
    # A graceful stop hands the spool over in as good a state as it can; whatever is left stays in
    # Redis (pending entries are reclaimed by the next worker), so nothing depends on this.
    try:
        result = services.usage_spool_drain(max_seconds=min(10.0, settings.SENTINEL_SHUTDOWN_GRACE))
        log.info("shutdown: %s", result.summary())
    except Exception:
        log.exception("shutdown: usage spool drain failed; entries stay in the spool")
