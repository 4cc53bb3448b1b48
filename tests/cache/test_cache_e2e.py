import asyncio
import json
import time

import httpx
import pytest

from billing.models import UsageEvent
from tenants.models import Tenant
from tenants.services import api_key_create
from tests.factories import TenantFactory
from tests.gateway.conftest import drain_usage

pytestmark = pytest.mark.django_db(transaction=True)


def body(content: str, **extra) -> dict:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": content}], **extra}


def caching_token(tenant: Tenant, ttl: int = 60) -> str:
    Tenant.objects.filter(pk=tenant.pk).update(cache_ttl_seconds=ttl)
    _, token = api_key_create(tenant=Tenant.objects.get(pk=tenant.pk), name="cached")
    return token


def post(gateway, token: str, payload: dict, **headers) -> httpx.Response:
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json=payload,
        headers={"authorization": f"Bearer {token}", **headers},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response


def upstream_calls(upstream, content: str) -> int:
    return sum(1 for r in upstream.requests() if r["body"]["messages"][-1]["content"] == content)


def ledger_event(request_id: str, timeout: float = 10.0) -> UsageEvent:
    deadline = time.monotonic() + timeout
    while True:
        drain_usage()
        event = UsageEvent.objects.filter(request_id=request_id).first()
        if event is not None or time.monotonic() > deadline:
            return event
        time.sleep(0.1)


def test_a_repeat_is_answered_from_the_cache_for_free(catalog, gateway, upstream, tenant):
    token = caching_token(tenant)
    first = post(gateway, token, body("cache me"))
    second = post(gateway, token, body("cache me", user="someone-else", stream=False))
    assert first.headers["x-sentinel-cache"] == "miss"
    assert second.headers["x-sentinel-cache"] == "hit"
    assert second.json()["choices"] == first.json()["choices"]
    assert upstream_calls(upstream, "cache me") == 1
    missed = ledger_event(first.headers["x-request-id"])
    hit = ledger_event(second.headers["x-request-id"])
    assert missed.cost_micros > 0 and not missed.cache_hit
    assert hit.cache_hit and hit.cost_micros == 0


def test_another_tenant_never_receives_the_cached_answer(catalog, gateway, upstream, tenant):
    mine = caching_token(tenant)
    theirs = caching_token(TenantFactory(name="Tenant C", slug="tenant-c"))
    post(gateway, mine, body("shared question"))
    assert post(gateway, mine, body("shared question")).headers["x-sentinel-cache"] == "hit"
    other = post(gateway, theirs, body("shared question"))
    assert other.headers["x-sentinel-cache"] == "miss"
    assert upstream_calls(upstream, "shared question") == 2


def test_twenty_identical_concurrent_requests_cause_one_upstream_call(catalog, gateway, upstream, tenant):
    upstream.configure(models={"gpt-test": {"latency_ms": 500}})
    token = caching_token(tenant)

    async def burst():
        async with httpx.AsyncClient(timeout=30) as http:
            return await asyncio.gather(
                *(
                    http.post(
                        f"{gateway.url}/v1/chat/completions",
                        json=body("everyone asks this"),
                        headers={"authorization": f"Bearer {token}"},
                    )
                    for _ in range(20)
                )
            )

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * 20
    assert upstream_calls(upstream, "everyone asks this") == 1
    assert sorted(r.headers["x-sentinel-cache"] for r in responses) == ["hit"] * 19 + ["miss"]
    assert len({json.dumps(r.json()["choices"]) for r in responses}) == 1


def test_a_cached_answer_is_replayed_as_a_stream(catalog, gateway, upstream, tenant):
    token = caching_token(tenant)
    answer = post(gateway, token, body("stream it later")).json()["choices"][0]["message"]["content"]
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json=body("stream it later", stream=True, stream_options={"include_usage": True}),
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    ) as response:
        assert response.headers["x-sentinel-cache"] == "hit"
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == answer
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    assert upstream_calls(upstream, "stream it later") == 1


@pytest.mark.parametrize("header", [{"x-sentinel-cache": "bypass"}, {"cache-control": "no-cache"}])
def test_a_request_can_bypass_the_cache(catalog, gateway, upstream, tenant, header):
    token = caching_token(tenant)
    post(gateway, token, body("fresh please"))
    bypassed = post(gateway, token, body("fresh please"), **header)
    assert bypassed.headers["x-sentinel-cache"] == "bypass"
    assert upstream_calls(upstream, "fresh please") == 2


def test_no_cache_without_a_tenant_ttl(catalog, gateway, upstream, tenant):
    token = caching_token(tenant, ttl=0)
    post(gateway, token, body("never cached"))
    response = post(gateway, token, body("never cached"))
    assert "x-sentinel-cache" not in response.headers
    assert upstream_calls(upstream, "never cached") == 2
