import asyncio
import time
from datetime import UTC, datetime

import httpx
import openai
import pytest
from django.db.models import Sum
from django.utils import timezone

from billing.models import UsageEvent
from billing.services import usage_spool_drain
from gateway import limits
from tenants.services import api_key_create
from tests.gateway.conftest import drain_usage
from tests.limits.conftest import USD, budget_state, redis_url

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "Tell me about rate limits"}]


def body(max_tokens=20, messages=MESSAGES):
    return {"model": "gpt-test", "messages": messages, "max_tokens": max_tokens}


def reserve_for(max_tokens=20, messages=MESSAGES) -> int:
    # gpt-test costs $1 per 1M input tokens and $2 per 1M output tokens: micro-dollars = tokens * price
    return limits.estimate_prompt_tokens(messages) * 1 + max_tokens * 2


async def post_all(requests: list[tuple[str, str, dict]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as http:
        return await asyncio.gather(
            *(
                http.post(f"{url}/v1/chat/completions", json=payload, headers={"authorization": f"Bearer {token}"})
                for url, token, payload in requests
            )
        )


def ledger_micros(key) -> int:
    return UsageEvent.objects.filter(tenant_id=key.tenant_id, api_key=key).aggregate(s=Sum("cost_micros"))["s"] or 0


@pytest.fixture(scope="module")
def second_gateway(live_server_factory):
    return live_server_factory()


def test_64_concurrent_requests_against_a_budget_with_room_for_10(catalog, gateway, upstream, tenant, user, rdb):
    upstream.configure(models={"gpt-test": {"latency_ms": 3000}})  # all 64 are admitted or refused meanwhile
    reserve = reserve_for()
    budget_micros = 10 * reserve + reserve // 2
    key, token = api_key_create(tenant=tenant, actor=user, name="ten", budget_usd=USD(budget_micros) / 1_000_000)

    responses = asyncio.run(post_all([(gateway.url, token, body())] * 64))

    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(ok) == 10 and len(refused) == 54
    for response in refused:
        error = response.json()["error"]
        assert error["type"] == "insufficient_quota" and error["code"] == "insufficient_quota"
        assert "budget" in error["message"]
    assert len(upstream.requests()) == 10
    drain_usage()
    deadline = time.monotonic() + 10
    while UsageEvent.objects.filter(api_key=key, status="ok").count() < 10 and time.monotonic() < deadline:
        drain_usage()
        time.sleep(0.1)
    recorded = ledger_micros(key)
    assert UsageEvent.objects.filter(api_key=key, status="ok").count() == 10
    assert 0 < recorded <= budget_micros
    [budget] = limits.applicable_budgets(key=key, at=timezone.now())
    assert budget_state(rdb, budget.redis_key) == {"spent": str(recorded), "reserved": "0"}


def test_two_server_processes_share_one_rate_limit_exactly(catalog, gateway, second_gateway, tenant, user):
    _, token = api_key_create(tenant=tenant, actor=user, name="shared", rpm=8)
    servers = [gateway.url, second_gateway.url]
    for url in servers:  # both processes know the key before the race starts
        assert httpx.get(f"{url}/v1/models", headers={"authorization": f"Bearer {token}"}).status_code == 200
    responses = asyncio.run(post_all([(servers[i % 2], token, body()) for i in range(16)]))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 8 + [429] * 8
    for response in responses:
        assert response.headers["x-ratelimit-limit-requests"] == "8"
        assert "x-request-id" in response.headers
        if response.status_code == 429:
            assert response.json()["error"]["code"] == "rate_limit_exceeded"
            assert int(response.headers["retry-after"]) >= 1
            assert response.headers["x-ratelimit-remaining-requests"] == "0"
    remaining = sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in responses if r.status_code == 200)
    assert remaining == list(range(8))


def test_rate_limit_headers_on_every_response_and_the_sdk_sees_a_429(catalog, gateway, tenant, user):
    tenant.default_tpm = 100_000
    tenant.save(update_fields=["default_tpm"])
    _, token = api_key_create(tenant=tenant, actor=user, name="sdk", rpm=2)
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=token, max_retries=0, timeout=20)
    first = client.chat.completions.with_raw_response.create(**body())
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    assert first.headers["x-ratelimit-limit-tokens"] == "100000"
    assert int(first.headers["x-ratelimit-remaining-tokens"]) < 100_000
    client.chat.completions.create(**body())
    with pytest.raises(openai.RateLimitError) as denied:
        client.chat.completions.create(**body())
    assert denied.value.code == "rate_limit_exceeded"
    assert "requests per minute" in denied.value.message
    assert int(denied.value.response.headers["retry-after"]) >= 1


def test_redis_outage_keeps_the_policy_and_counters_are_rebuilt_from_postgres(
    catalog, live_server_factory, own_redis, tenant, user, upstream
):
    server = live_server_factory(REDIS_URL=own_redis.url, SENTINEL_REDIS_DOWN_BACKOFF="0.3")
    tenant.cache_ttl_seconds = 60
    tenant.save(update_fields=["cache_ttl_seconds"])
    reserve = reserve_for()
    budget_micros = 10 * reserve + reserve // 2
    key, token = api_key_create(
        tenant=tenant, actor=user, name="outage", rpm=3, budget_usd=USD(budget_micros) / 1_000_000
    )
    http = httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {token}"}, timeout=60)

    def send() -> httpx.Response:
        response = http.post("/v1/chat/completions", json=body())
        assert response.status_code < 500, response.text
        return response

    # Redis up: the rate limit holds (and the cache answers repeats).
    phase_one = [send() for _ in range(4)]
    assert [r.status_code for r in phase_one] == [200, 200, 200, 429]
    assert [r.headers.get("x-sentinel-cache") for r in phase_one[:3]] == ["miss", "hit", "hit"]
    with redis_url(own_redis.url):
        usage_spool_drain(max_seconds=5)
    [budget] = limits.applicable_budgets(key=key, at=datetime.now(UTC))
    redis_state = own_redis.client()
    assert budget_state(redis_state, budget.redis_key)["spent"] == str(ledger_micros(key))

    # Redis down: rate limits fail open, budgets are checked against PostgreSQL, nothing is a 500.
    own_redis.stop()
    outage = []
    for _ in range(40):
        response = send()
        outage.append(response)
        if response.status_code == 429:
            break
    served = [r for r in outage if r.status_code == 200]
    assert len(served) > 3  # more than the 3 RPM: rate limits failed open
    assert {r.headers["x-sentinel-cache"] for r in served} == {"miss"}  # the cache failed open too
    assert outage[-1].status_code == 429
    assert outage[-1].json()["error"]["type"] == "insufficient_quota"
    assert all("x-ratelimit-limit-requests" not in r.headers for r in served)
    assert ledger_micros(key) <= budget_micros

    # Redis back, empty: the budget is rebuilt from the ledger on first use.
    own_redis.start()
    time.sleep(0.5)
    after = send()
    assert after.status_code in (200, 429)
    with redis_url(own_redis.url):
        usage_spool_drain(max_seconds=5)
    rebuilt = budget_state(redis_state, budget.redis_key)
    assert rebuilt["spent"] == str(ledger_micros(key))
    assert rebuilt["reserved"] == "0"
    assert int(rebuilt["spent"]) <= budget_micros
    redis_state.close()
    http.close()
