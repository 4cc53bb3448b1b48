"""Budget alerts: each threshold of each budget fires once per budget period.

The check creates ``BudgetAlert`` rows (a unique index makes a second fire impossible, even from
two workers at once) and audits them in one transaction; after commit a Celery task delivers each
by email and by a signed webhook, retried with backoff.

Webhook signature: ``X-Sentinel-Signature: t=<unix ts>,v1=<hex HMAC-SHA256 of "<ts>.<body>">``
keyed with the tenant's ``alert_webhook_secret`` (no header when the tenant has no secret).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from datetime import datetime
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import record
from billing.errors import WebhookDeliveryFailed, WebhookTargetRefused
from billing.models import BudgetAlert
from billing.pricing import micros_to_usd
from billing.selectors import BudgetState, budget_states
from tenants.models import Tenant

log = logging.getLogger("sentinel.billing.alerts")

DEFAULT_THRESHOLDS = (50, 80, 100)
WEBHOOK_TIMEOUT = httpx.Timeout(5.0, connect=3.0)
SIGNATURE_HEADER = "X-Sentinel-Signature"


def alert_thresholds(tenant: Tenant) -> list[int]:
    """The tenant's thresholds in percent (default 50/80/100), sorted, invalid entries dropped."""
    values = set()
    for value in tenant.alert_thresholds or DEFAULT_THRESHOLDS:
        try:
            percent = int(value)
        except (TypeError, ValueError):
            continue
        if 0 < percent <= 1000:
            values.add(percent)
    return sorted(values)


def _crossed(state: BudgetState, thresholds: list[int]) -> list[int]:
    if state.budget_micros <= 0:
        return []  # a zero budget blocks spend at the gateway; there is no percentage to report
    return [t for t in thresholds if state.spent_micros * 100 >= t * state.budget_micros]


def budget_alerts_check(*, tenant: Tenant, now: datetime | None = None) -> list[BudgetAlert]:
    """Create (and schedule delivery of) an alert for every threshold crossed in the current
    period of the tenant's budget and of each key budget that has not fired yet. Idempotent."""
    thresholds = alert_thresholds(tenant)
    due = [(state, t) for state in budget_states(tenant=tenant, now=now) for t in _crossed(state, thresholds)]
    if not due:
        return []
    fired = set(
        BudgetAlert.objects.filter(tenant=tenant, period_start__in={s.first for s, _ in due}).values_list(
            "scope", "api_key_id", "period_start", "threshold"
        )
    )
    created: list[BudgetAlert] = []
    with transaction.atomic():
        for state, threshold in due:
            key_id = state.api_key.pk if state.api_key is not None else None
            if (state.scope, key_id, state.first, threshold) in fired:
                continue
            try:
                with transaction.atomic():
                    alert = BudgetAlert.objects.create(
                        tenant=tenant,
                        scope=state.scope,
                        api_key=state.api_key,
                        period=state.period,
                        period_start=state.first,
                        threshold=threshold,
                        budget_micros=state.budget_micros,
                        spent_micros=state.spent_micros,
                        webhook_status=BudgetAlert.Delivery.PENDING
                        if tenant.alert_webhook_url
                        else BudgetAlert.Delivery.NOT_CONFIGURED,
                        email_status=BudgetAlert.Delivery.PENDING
                        if tenant.alert_emails
                        else BudgetAlert.Delivery.NOT_CONFIGURED,
                    )
            except IntegrityError:
                continue  # another checker fired it a moment ago
            record(
                tenant=tenant,
                action="budget.threshold_crossed",
                actor=None,
                target=alert,
                metadata={
                    "scope": state.scope,
                    "key": state.api_key.public_id if state.api_key is not None else None,
                    "period_start": state.first.isoformat(),
                    "threshold": threshold,
                    "spent_micros": state.spent_micros,
                    "budget_micros": state.budget_micros,
                },
            )
            created.append(alert)
        for alert in created:
            if (
                alert.webhook_status == BudgetAlert.Delivery.PENDING
                or alert.email_status == BudgetAlert.Delivery.PENDING
            ):
                transaction.on_commit(lambda a=alert: _schedule_delivery(a))
    return created


def _schedule_delivery(alert: BudgetAlert) -> None:
    from billing.tasks import send_budget_alert  # tasks import services; not the other way at import time

    send_budget_alert.delay(alert_id=alert.pk, tenant_id=alert.tenant_id)


# --------------------------------------------------------------------------- delivery
def alert_payload(alert: BudgetAlert, tenant: Tenant) -> dict:
    key = alert.api_key
    return {
        "type": "budget.threshold_crossed",
        "id": f"balert_{alert.pk}",
        "created": int(alert.created_at.timestamp()),
        "tenant": tenant.slug,
        "scope": alert.scope,
        "key": {"id": key.public_id, "name": key.name} if key is not None else None,
        "period": alert.period,
        "period_start": alert.period_start.isoformat(),
        "threshold_percent": alert.threshold,
        "budget_usd": str(micros_to_usd(alert.budget_micros)),
        "spent_usd": str(micros_to_usd(alert.spent_micros)),
        "budget_micros": alert.budget_micros,
        "spent_micros": alert.spent_micros,
    }


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _check_target(url: str) -> None:
    """Refuse private, loopback and link-local destinations in production (SSRF), unless the
    operator allows them (``SENTINEL_WEBHOOK_ALLOW_PRIVATE``)."""
    allow = settings.SENTINEL_WEBHOOK_ALLOW_PRIVATE
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise WebhookTargetRefused("the webhook URL must be http(s)://host/…")
    if allow:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except socket.gaierror as exc:
        raise WebhookDeliveryFailed(f"cannot resolve {parts.hostname}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise WebhookTargetRefused(f"{parts.hostname} resolves to a non-public address")


def budget_alert_email(*, tenant: Tenant, alert: BudgetAlert) -> None:
    """Email the tenant's alert recipients once (no-op if already sent or not configured)."""
    if alert.email_status != BudgetAlert.Delivery.PENDING:
        return
    what = f"key {alert.api_key.name}" if alert.api_key is not None else tenant.name
    subject = f"[Sentinel] {tenant.name}: {alert.threshold}% of the {alert.period} budget of {what} used"
    body = (
        f"Budget alert for {tenant.name}\n\n"
        f"Budget: {what} ({alert.period}, period starting {alert.period_start:%Y-%m-%d})\n"
        f"Threshold crossed: {alert.threshold}%\n"
        f"Spent: ${micros_to_usd(alert.spent_micros)} of ${micros_to_usd(alert.budget_micros)}\n"
    )
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, list(tenant.alert_emails), fail_silently=False)
    except OSError as exc:
        log.warning("budget alert %s: email failed: %s", alert.pk, exc)
        alert.email_status = BudgetAlert.Delivery.FAILED
    else:
        alert.email_status = BudgetAlert.Delivery.DELIVERED
        alert.emailed_at = timezone.now()
    alert.save(update_fields=["email_status", "emailed_at"])


def budget_alert_webhook(*, tenant: Tenant, alert: BudgetAlert, last_attempt: bool = False) -> None:
    """POST the signed alert to the tenant's webhook once more. Raises
    :class:`WebhookDeliveryFailed` on a non-2xx answer or a network error (the task retries),
    except on the last attempt, which marks the alert failed instead."""
    if alert.webhook_status != BudgetAlert.Delivery.PENDING:
        return
    body = json.dumps(alert_payload(alert, tenant), separators=(",", ":"), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "Sentinel-Webhooks/1.0"}
    if tenant.alert_webhook_secret:
        headers[SIGNATURE_HEADER] = webhook_signature(
            secret=tenant.alert_webhook_secret, timestamp=int(time.time()), body=body
        )
    alert.webhook_attempts += 1
    error = ""
    try:
        _check_target(tenant.alert_webhook_url)
        response = httpx.post(
            tenant.alert_webhook_url, content=body, headers=headers, timeout=WEBHOOK_TIMEOUT, follow_redirects=False
        )
        alert.webhook_last_status = response.status_code
        if not response.is_success:
            error = f"HTTP {response.status_code}"
    except WebhookTargetRefused as exc:
        error, last_attempt = str(exc), True  # retrying cannot help
    except (httpx.HTTPError, WebhookDeliveryFailed) as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
    fields = ["webhook_attempts", "webhook_last_status", "webhook_error", "webhook_status", "webhook_delivered_at"]
    alert.webhook_error = error
    if not error:
        alert.webhook_status = BudgetAlert.Delivery.DELIVERED
        alert.webhook_delivered_at = timezone.now()
        alert.save(update_fields=fields)
        return
    if last_attempt:
        alert.webhook_status = BudgetAlert.Delivery.FAILED
    alert.save(update_fields=fields)
    if not last_attempt:
        raise WebhookDeliveryFailed(error)
