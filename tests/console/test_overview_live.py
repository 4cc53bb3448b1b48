from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from gateway.live import live_record
from tenants.models import Role, Tenant
from tenants.services import api_key_create
from tests.console.usage import add_usage
from tests.factories import MembershipFactory, TenantFactory, UserFactory


def test_overview_counts_todays_requests_in_the_tenants_timezone(console, tenant, other_tenant, owner, their_key):
    Tenant.objects.filter(pk=tenant.pk).update(timezone="Pacific/Auckland", budget_usd=10)
    tenant.refresh_from_db()
    key, _ = api_key_create(tenant=tenant, actor=owner, name="top-key")
    add_usage(tenant=tenant, key=key, model="gpt-test", cost_micros=250_000, count=4, latency_ms=200)
    add_usage(tenant=tenant, key=key, model="claude-test", cost_micros=0, status="error", latency_ms=900)
    local_midnight = timezone.localtime(timezone.now(), tenant_tz(tenant)).replace(hour=0, minute=0, second=0)
    add_usage(tenant=tenant, key=key, cost_micros=9_000_000, at=local_midnight - timedelta(minutes=1))
    add_usage(tenant=other_tenant, key=their_key, cost_micros=5_000_000, count=7)

    html = console.get(reverse("tenants:overview", args=[tenant.slug])).content.decode()

    assert '<p class="stat-value num">5</p>' in html  # 4 ok + 1 error today, not yesterday's, not B's
    assert "20.0%" in html and "1 failed request" in html
    assert "$1.00" in html  # spend today
    assert "200<small>ms</small>" in html  # p95 of successful requests
    assert "top-key" in html and "gpt-test" in html
    assert "their-secret-key" not in html


def tenant_tz(tenant):
    import zoneinfo

    return zoneinfo.ZoneInfo(tenant.timezone)


def test_overview_without_traffic_says_what_to_do_next(console, tenant):
    html = console.get(reverse("tenants:overview", args=[tenant.slug])).content.decode()
    assert "No requests yet today" in html and "Create your first key" in html


async def _record(tenant_id: int, n: int) -> None:
    for _ in range(n):
        live_record(tenant_id=tenant_id, latency_ms=120, tokens=30, cost_micros=1500, error=False)
    await asyncio.sleep(0.2)  # live_record writes in a background task


def test_live_fragment_polling_fallback_shows_the_tenants_counters(console, tenant, other_tenant):
    asyncio.run(_record(tenant.pk, 3))
    asyncio.run(_record(other_tenant.pk, 50))
    response = console.get(reverse("tenants:live_fragment", args=[tenant.slug]), headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="live-metrics"')
    assert 'data-live-poll hx-get="/t/tenant-a/live/fragment/" hx-trigger="every 2s"' in html
    assert '<span id="live-requests">3</span>' in html


def test_live_page_connects_the_websocket_for_its_tenant(console, tenant):
    html = console.get(reverse("tenants:live", args=[tenant.slug])).content.decode()
    assert f'hx-ext="ws" ws-connect="/ws/t/{tenant.slug}/live/"' in html


def _session_headers(user) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return [
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
        (b"origin", b"http://127.0.0.1"),
        (b"host", b"127.0.0.1"),
    ]


async def _connect(slug: str, headers):
    from sentinel_site.asgi import application

    communicator = WebsocketCommunicator(application, f"/ws/t/{slug}/live/", headers=headers)
    connected, _ = await communicator.connect()
    return communicator, connected


@pytest.mark.django_db(transaction=True)
def test_live_websocket_pushes_oob_fragments_to_members():
    tenant = TenantFactory(slug="live-a")
    user = UserFactory()
    MembershipFactory(tenant=tenant, user=user, role=Role.VIEWER)
    headers = _session_headers(user)

    async def scenario():
        await _record(tenant.pk, 4)
        communicator, connected = await _connect(tenant.slug, headers)
        assert connected
        first = await communicator.receive_from(timeout=5)
        second = await communicator.receive_from(timeout=5)
        await communicator.disconnect()
        return first, second

    first, second = asyncio.run(scenario())
    assert '<div id="live-metrics" hx-swap-oob="true"' in first
    assert '<span id="live-requests">4</span>' in first
    assert '<div id="live-chart" class="card mt-4" hx-swap-oob="true"' in first
    assert "Requests/s" in second


@pytest.mark.django_db(transaction=True)
def test_live_websocket_refuses_anonymous_users_and_non_members():
    tenant = TenantFactory(slug="live-b")
    stranger = UserFactory()
    MembershipFactory(tenant=TenantFactory(slug="elsewhere"), user=stranger)
    stranger_headers = _session_headers(stranger)

    async def close_code(slug, headers):
        communicator, connected = await _connect(slug, headers)
        assert connected  # accepted, then closed with our code
        message = await communicator.receive_output(timeout=5)
        await communicator.wait()
        return message

    anonymous = asyncio.run(close_code(tenant.slug, [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]))
    assert (anonymous["type"], anonymous["code"]) == ("websocket.close", 4403)
    not_member = asyncio.run(close_code(tenant.slug, stranger_headers))
    assert not_member["code"] == 4404
    missing = asyncio.run(close_code("no-such-tenant", stranger_headers))
    assert missing["code"] == 4404


def test_platform_operator_lists_tenants_with_usage_and_suspends_one(tenant, other_tenant, owner, client_for):
    add_usage(tenant=tenant, cost_micros=2_500_000, count=2)
    operator = client_for(UserFactory(is_superuser=True, is_staff=True))
    html = operator.get(reverse("tenants:platform_tenants")).content.decode()
    assert "Tenant A" in html and "Tenant B" in html and "$5.00" in html
    response = operator.post(
        reverse("tenants:platform_tenant_status", args=[tenant.pk]),
        {"status": "suspended"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert f'<tr id="tenant-{tenant.pk}"' in response.content.decode() and "Suspended" in response.content.decode()
    tenant.refresh_from_db()
    other_tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.SUSPENDED and other_tenant.is_active
    # members of the suspended tenant are told why their keys stop working
    page = client_for(owner).get(reverse("tenants:overview", args=[tenant.slug])).content.decode()
    assert "This tenant is suspended" in page
    operator.post(reverse("tenants:platform_tenant_status", args=[tenant.pk]), {"status": "active"})
    tenant.refresh_from_db()
    assert tenant.is_active
