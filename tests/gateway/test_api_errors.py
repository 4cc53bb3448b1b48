import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import OperationalError
from django.test import Client

from sentinel_site import api
from tenants.services import api_key_create


@pytest.mark.parametrize(("path", "envelope"), [("/v1/models", "openai"), ("/v1/messages", "anthropic")])
def test_a_database_outage_on_a_cold_key_is_503_with_retry_after_not_500(monkeypatch, path, envelope):
    async def database_down(token):
        raise OperationalError("couldn't get a connection after 10.00 sec")

    monkeypatch.setattr(api, "api_key_for_token", database_down)
    client = Client()
    if path == "/v1/models":
        response = client.get(path, headers={"authorization": "Bearer sk-sntl-cold"})
    else:
        response = client.post(path, {}, content_type="application/json", headers={"x-api-key": "sk-sntl-cold"})

    assert response.status_code == 503 and response["retry-after"] == "1"
    body = response.json()
    error = body["error"]
    assert "database" in error["message"] and "couldn't get a connection" not in error["message"]
    assert (error.get("code"), body.get("type")) == (
        ("service_unavailable", None) if envelope == "openai" else (None, "error")
    )


@pytest.mark.django_db(transaction=True)
def test_in_flight_requests_do_not_hold_database_connections(live_server_factory, catalog, upstream, tenant, user):
    """Six cold keys (each looked up in PostgreSQL) in flight at once on a pool of two connections:
    each lookup hands its connection back before the upstream call, so all six reach the upstream
    together instead of two at a time."""
    server = live_server_factory(DATABASE_POOL_MAX_SIZE="2")
    upstream.configure(models={"gpt-test": {"latency_ms": 4000}})
    tokens = [api_key_create(tenant=tenant, actor=user, name=f"cold-{i}")[1] for i in range(6)]

    def call(token):
        return httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {token}"},
            timeout=30,
        )

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(call, token) for token in tokens]
        deadline = time.monotonic() + 3.5  # within the first upstream call's 4 s
        while len(upstream.requests()) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        in_flight_together = len(upstream.requests())
        statuses = [future.result().status_code for future in futures]

    assert in_flight_together == 6
    assert statuses == [200] * 6


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [("GET", "/v1/nothing", 404, "not_found"), ("DELETE", "/v1/models", 405, "method_not_allowed")],
)
def test_unknown_routes_and_methods_answer_in_the_envelope(gateway, method, path, status, code):
    response = httpx.request(method, f"{gateway.url}{path}", timeout=10)
    assert response.status_code == status and response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code and response.headers["x-request-id"]
