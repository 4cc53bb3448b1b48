"""What must not depend on the server choice, checked through each one over real sockets: the
console's live-metrics websocket (Channels) with a member's session, and a client that hangs up
mid-stream (the upstream is closed, the usage recorded once)."""

import time

import httpx
import pytest
from django.test import Client
from websockets.sync.client import connect

from tenants.models import Role
from tests.factories import MembershipFactory, TenantFactory, UserFactory
from tests.gateway.conftest import usage_events

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("server_name", ["daphne", "uvicorn", "granian"])
def test_live_metrics_websocket_pushes_fragments_to_a_member(serve, server_name):
    tenant = TenantFactory(slug=f"ws-{server_name}")
    user = UserFactory()
    MembershipFactory(tenant=tenant, user=user, role=Role.VIEWER)
    client = Client()
    client.force_login(user)
    server = serve("--server", server_name)
    url = f"ws://127.0.0.1:{server.port}/ws/t/{tenant.slug}/live/"
    headers = {"Cookie": f"sessionid={client.cookies['sessionid'].value}", "Origin": "http://127.0.0.1"}
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        first = ws.recv(timeout=10)
    assert '<div id="live-metrics" hx-swap-oob="true"' in first
    assert "live-requests" in first

    # Someone else's session is refused with Sentinel's close code.
    stranger = UserFactory()
    MembershipFactory(tenant=TenantFactory(slug=f"other-{server_name}"), user=stranger)
    client = Client()
    client.force_login(stranger)
    headers["Cookie"] = f"sessionid={client.cookies['sessionid'].value}"
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        with pytest.raises(Exception) as closed:
            ws.recv(timeout=10)
    assert getattr(closed.value, "rcvd", None) is not None and closed.value.rcvd.code == 4404


@pytest.mark.parametrize("server_name", ["uvicorn", "granian"])
def test_a_client_that_hangs_up_mid_stream_is_recorded_once(serve, upstream, api_token, server_name):
    upstream.configure(models={"gpt-test": {"chunks": 50, "chunk_delay_ms": 100}})
    server = serve("--server", server_name)
    with httpx.stream(
        "POST",
        f"{server.url}/v1/chat/completions",
        timeout=20,
        headers={"authorization": f"Bearer {api_token}"},
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "stream": True},
    ) as response:
        request_id = response.headers["x-request-id"]
        lines = response.iter_lines()
        for _ in range(3):
            next(lines)
    upstream.wait_for(lambda s: s["client_disconnects"] >= 1 and s["active_streams"] == 0, timeout=5)
    (event,) = usage_events(request_id)
    assert event.status == "client_closed" and event.estimated and event.completion_tokens > 0


@pytest.mark.parametrize("server_name", ["uvicorn", "granian"])
def test_proxy_headers_give_the_client_address_behind_a_proxy(serve, server_name):
    server = serve("--server", server_name, "--proxy-headers", SENTINEL_LOG_FORMAT="json")
    response = httpx.get(f"{server.url}/v1/no-such-route", headers={"x-forwarded-for": "203.0.113.7"}, timeout=10)
    assert response.status_code == 404
    deadline = time.monotonic() + 5
    while '"client":"203.0.113.7"' not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert '"client":"203.0.113.7"' in server.log(), server.log()[-2000:]
