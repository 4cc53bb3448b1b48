"""The console's live-metrics websocket (Channels) through each production server, over a real
socket with a member's session: the server choice must not break it."""

import pytest
from django.test import Client
from websockets.sync.client import connect

from tenants.models import Role
from tests.factories import MembershipFactory, TenantFactory, UserFactory

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
