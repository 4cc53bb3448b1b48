import hashlib
import hmac
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.urls import reverse

from audit.models import AuditEvent
from billing.models import BudgetAlert
from billing.services import budget_alerts_check, usage_events_insert, usage_rollup_pending
from tenants.models import BudgetPeriod
from tests.billing.conftest import make_key, usage

pytestmark = pytest.mark.django_db

SECRET = "whsec_test_5f0c2a"
NOON = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


class WebhookReceiver:
    """A real HTTP server on a loopback port that records what it receives."""

    def __init__(self, failures: int = 0) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = 500 if receiver.failures > 0 else 204
                receiver.failures -= 1
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/sentinel"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def payloads(self) -> list[dict]:
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.server.shutdown()


@pytest.fixture
def budgeted(tenant, receiver):
    tenant.budget_usd = Decimal("10")
    tenant.budget_period = BudgetPeriod.DAY
    tenant.alert_webhook_url = receiver.url
    tenant.alert_webhook_secret = SECRET
    tenant.alert_emails = ["finance@tenant-a.test"]
    tenant.save()
    return tenant


def spend(tenant, key, usd: str, at: datetime = NOON) -> None:
    usage_events_insert(records=[usage(tenant, key, at=at, cost=int(Decimal(usd) * 1_000_000))])
    usage_rollup_pending()


def verify(headers: dict[str, str], body: bytes) -> bool:
    fields = dict(part.split("=", 1) for part in headers["x-sentinel-signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(fields["t"])) < 300
    return fresh and hmac.compare_digest(expected, fields["v1"])


def test_each_threshold_fires_once_per_period_with_a_verifiable_signature(
    budgeted, keys, receiver, django_capture_on_commit_callbacks
):
    def check(now=NOON):
        with django_capture_on_commit_callbacks(execute=True):
            return budget_alerts_check(tenant=budgeted, now=now)

    spend(budgeted, keys[0], "4.99")
    assert check() == []
    spend(budgeted, keys[0], "0.01")  # exactly 50 %
    assert [a.threshold for a in check()] == [50]
    assert check() == []
    spend(budgeted, keys[1], "4.00")
    assert [a.threshold for a in check()] == [80]
    spend(budgeted, keys[1], "3.00")  # 120 %
    assert [a.threshold for a in check()] == [100]
    assert check() == [] and check() == []

    assert [p["threshold_percent"] for p in receiver.payloads()] == [50, 80, 100]
    assert all(verify(headers, body) for headers, body in receiver.received)
    assert not verify(receiver.received[0][0], receiver.received[0][1] + b" ")
    last = receiver.payloads()[-1]
    assert (last["tenant"], last["scope"], last["period"], last["period_start"]) == (
        "tenant-a",
        "tenant",
        "day",
        "2026-11-10",
    )
    assert (last["spent_micros"], last["budget_micros"], last["spent_usd"]) == (12_000_000, 10_000_000, "12.000000")
    assert [m.to for m in mail.outbox] == [["finance@tenant-a.test"]] * 3
    assert "80% of the day budget" in mail.outbox[1].subject
    alerts = BudgetAlert.objects.filter(tenant=budgeted)
    assert set(alerts.values_list("webhook_status", "email_status")) == {("delivered", "delivered")}
    assert AuditEvent.objects.filter(tenant=budgeted, action="budget.threshold_crossed").count() == 3

    tomorrow = NOON + timedelta(days=1)
    spend(budgeted, keys[0], "6.00", at=tomorrow)
    assert [a.threshold for a in check(tomorrow)] == [50]
    assert BudgetAlert.objects.filter(tenant=budgeted).count() == 4


def test_a_failing_webhook_is_retried_until_it_is_accepted(
    budgeted, keys, receiver, django_capture_on_commit_callbacks
):
    receiver.failures = 2
    spend(budgeted, keys[0], "9.00")

    with django_capture_on_commit_callbacks(execute=True):
        budget_alerts_check(tenant=budgeted, now=NOON)

    assert len(receiver.received) == 2 + 2  # 50 %: fail, fail, ok; 80 %: ok
    alert = BudgetAlert.objects.get(tenant=budgeted, threshold=50)
    assert (alert.webhook_status, alert.webhook_attempts, alert.webhook_last_status) == ("delivered", 3, 204)
    assert all(verify(h, b) for h, b in receiver.received)


def test_a_key_budget_alerts_on_its_own_period(tenant, user, receiver, django_capture_on_commit_callbacks):
    tenant.alert_webhook_url = receiver.url
    tenant.alert_webhook_secret = SECRET
    tenant.save()
    key = make_key(tenant, user, "capped", budget_usd=Decimal("2"))
    other = make_key(tenant, user, "free")
    spend(tenant, other, "50.00")
    spend(tenant, key, "1.70")

    with django_capture_on_commit_callbacks(execute=True):
        fired = budget_alerts_check(tenant=tenant, now=NOON)

    assert [(a.scope, a.api_key_id, a.threshold) for a in fired] == [("key", key.pk, 50), ("key", key.pk, 80)]
    assert receiver.payloads()[0]["key"] == {"id": key.public_id, "name": "capped"}


def test_thresholds_come_from_the_tenant(budgeted, keys, django_capture_on_commit_callbacks):
    budgeted.alert_thresholds = [25, 90]
    budgeted.alert_webhook_url = ""
    budgeted.save()
    spend(budgeted, keys[0], "9.50")

    with django_capture_on_commit_callbacks(execute=True):
        fired = budget_alerts_check(tenant=budgeted, now=NOON)

    assert [a.threshold for a in fired] == [25, 90]
    assert {a.webhook_status for a in fired} == {"not_configured"}


def test_the_alert_history_page_lists_the_tenants_alerts_only(budgeted, other_tenant, keys, console, receiver):
    spend(budgeted, keys[0], "8.00")
    budget_alerts_check(tenant=budgeted, now=NOON)
    BudgetAlert.objects.create(
        tenant=other_tenant,
        scope="tenant",
        period="month",
        period_start=NOON.date(),
        threshold=77,
        budget_micros=1,
        spent_micros=1,
    )

    response = console.get(reverse("billing:alerts", kwargs={"tenant_slug": budgeted.slug}))

    assert [a.threshold for a in response.context["page"].alerts] == [80, 50]
    assert b"77%" not in response.content


def test_in_production_a_webhook_to_a_private_address_is_refused_not_sent(
    budgeted, keys, receiver, settings, django_capture_on_commit_callbacks
):
    settings.SENTINEL_WEBHOOK_ALLOW_PRIVATE = False  # the production default
    spend(budgeted, keys[0], "5.00")

    with django_capture_on_commit_callbacks(execute=True):
        budget_alerts_check(tenant=budgeted, now=NOON)

    alert = BudgetAlert.objects.get(tenant=budgeted, threshold=50)
    assert (alert.webhook_status, alert.webhook_attempts) == ("failed", 1)
    assert "non-public address" in alert.webhook_error
    assert receiver.received == []
