import asyncio
import socket
import time

import pytest
import redis
from asgiref.sync import async_to_sync
from django.conf import settings

from gateway import cache, limits

BODY = {
    "model": "gpt-test",
    "messages": [{"role": "user", "content": "What is 2+2?"}],
    "temperature": 0.0,
}
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-test",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}


@pytest.fixture(autouse=True)
def _fresh_state(settings):
    settings.SENTINEL_LIMITS_REDIS_TIMEOUT = 1.0
    limits.forget_process_state()
    yield
    limits.forget_process_state()


@pytest.fixture
def rdb():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def redis_down(settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    return settings


def run(fn, *args, **kwargs):
    return async_to_sync(fn)(*args, **kwargs)


def key_for(tenant_id=1, endpoint="chat.completions", **changes):
    return cache.cache_key(tenant_id=tenant_id, endpoint=endpoint, body={**BODY, **changes})


def test_key_ignores_fields_that_do_not_change_the_answer():
    base = key_for()
    assert key_for(stream=True, stream_options={"include_usage": True}) == base
    assert key_for(user="u-42", metadata={"team": "a"}, store=True, service_tier="auto") == base
    assert key_for(top_p=None) == base
    assert key_for(temperature=0) == base
    reordered = dict(reversed(list(BODY.items())))
    assert cache.cache_key(tenant_id=1, endpoint="chat.completions", body=reordered) == base


@pytest.mark.parametrize(
    "change",
    [
        {"model": "claude-test"},
        {"temperature": 0.7},
        {"messages": [{"role": "user", "content": "What is 2+3?"}]},
        {"max_tokens": 5},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"n": 2},
        {"seed": 1},
    ],
)
def test_key_changes_with_anything_that_changes_the_answer(change):
    assert key_for(**change) != key_for()


def test_keys_are_scoped_by_tenant_and_endpoint():
    mine, theirs = key_for(tenant_id=1), key_for(tenant_id=2)
    assert mine != theirs
    assert mine.startswith(f"{settings.SENTINEL_REDIS_PREFIX}t:1:cache:chat.completions:")
    assert key_for(endpoint="messages") != mine


def test_store_then_lookup_with_the_tenants_ttl(rdb):
    key = key_for()
    assert run(cache.lookup, tenant_id=1, key=key) is None
    run(cache.store, tenant_id=1, key=key, response=ANSWER, ttl=120)
    assert run(cache.lookup, tenant_id=1, key=key) == ANSWER
    assert 110 <= rdb.ttl(key) <= 120


def test_another_tenant_never_reads_the_answer():
    mine = key_for(tenant_id=1)
    run(cache.store, tenant_id=1, key=mine, response=ANSWER, ttl=60)
    assert run(cache.lookup, tenant_id=2, key=key_for(tenant_id=2)) is None
    with pytest.raises(ValueError, match="tenant"):
        run(cache.lookup, tenant_id=2, key=mine)
    with pytest.raises(ValueError, match="tenant"):
        run(cache.store, tenant_id=2, key=mine, response={"poisoned": True}, ttl=60)
    assert run(cache.lookup, tenant_id=1, key=mine) == ANSWER


def test_zero_ttl_and_huge_answers_are_not_stored(rdb):
    key = key_for()
    run(cache.store, tenant_id=1, key=key, response=ANSWER, ttl=0)
    huge = {**ANSWER, "choices": [{"message": {"content": "x" * (cache.MAX_ENTRY_BYTES + 1)}}]}
    run(cache.store, tenant_id=1, key=key, response=huge, ttl=60)
    assert not rdb.exists(key)


def test_a_corrupt_entry_is_a_miss(rdb):
    key = key_for()
    rdb.set(key, b"{not json")
    assert run(cache.lookup, tenant_id=1, key=key) is None


def test_redis_unreachable_is_a_miss_a_skipped_write_and_everyone_leads(redis_down):
    key = key_for()

    async def scenario():
        assert await cache.lookup(tenant_id=1, key=key) is None
        await cache.store(tenant_id=1, key=key, response=ANSWER, ttl=60)
        async with cache.fetch_or_lead(tenant_id=1, key=key) as first:
            async with cache.fetch_or_lead(tenant_id=1, key=key) as second:
                return first, second

    assert run(scenario) == (None, None)  # both miss and both lead (go upstream)
    calls, results, _ = run(_identical_requests, 3, upstream_seconds=0)
    assert calls == 3 and [kind for kind, _ in results] == ["upstream"] * 3


async def _identical_requests(n, *, tenant_id=1, upstream_seconds=0.2, fail_leader=False):
    """The pipeline's path: lookup and single-flight lock in one round trip (fetch_or_lead)."""
    calls = 0
    key = key_for(tenant_id=tenant_id)

    async def request():
        nonlocal calls
        try:
            async with cache.fetch_or_lead(tenant_id=tenant_id, key=key, wait_seconds=5) as answer:
                if answer is not None:
                    return "waited", answer
                calls += 1
                await asyncio.sleep(upstream_seconds)
                if fail_leader and calls == 1:
                    raise RuntimeError("upstream failed")
                await cache.store(tenant_id=tenant_id, key=key, response=ANSWER, ttl=60)
                return "upstream", ANSWER
        except RuntimeError:
            return "error", None

    started = time.perf_counter()
    results = await asyncio.gather(*(request() for _ in range(n)))
    return calls, results, time.perf_counter() - started


def test_twenty_identical_concurrent_requests_make_one_upstream_call(rdb):
    calls, results, elapsed = run(_identical_requests, 20)
    assert calls == 1
    assert sorted(kind for kind, _ in results).count("waited") == 19
    assert all(answer == ANSWER for _, answer in results)
    assert elapsed < 1.0
    assert not rdb.exists(key_for() + ":lock")
    calls, results, _ = run(_identical_requests, 3)  # later: plain hits
    assert calls == 0 and [kind for kind, _ in results] == ["waited"] * 3


def test_when_the_leader_fails_the_others_go_upstream_themselves(rdb):
    calls, results, elapsed = run(_identical_requests, 5, fail_leader=True)
    assert [kind for kind, _ in results].count("error") == 1
    assert calls >= 2 and elapsed < 2.0
    assert not rdb.exists(key_for() + ":lock")


def _follow(key: str, wait_seconds: float):
    async def follower():
        started = time.perf_counter()
        async with cache.fetch_or_lead(tenant_id=1, key=key, wait_seconds=wait_seconds) as answer:
            return answer, time.perf_counter() - started

    return run(follower)


def test_a_dead_leaders_lock_expires(rdb):
    key = key_for()
    rdb.set(key + ":lock", "someone-who-died", px=300)
    answer, waited = _follow(key, 5)
    assert answer is None  # nothing was stored: this caller goes upstream itself
    assert 0.25 <= waited < 1.0


def test_a_follower_stops_waiting_after_wait_seconds(rdb):
    key = key_for()
    rdb.set(key + ":lock", "slow-leader", px=10_000)
    answer, waited = _follow(key, 0.3)
    assert answer is None and 0.3 <= waited < 0.8
    assert rdb.get(key + ":lock") == b"slow-leader"  # never released by someone else


def test_embedded_default_caches_and_single_flights_in_process(settings):
    settings.REDIS_URL = None
    calls, results, _ = run(_identical_requests, 10, tenant_id=7, upstream_seconds=0.05)
    assert calls == 1
    assert [kind for kind, _ in results].count("waited") == 9
    assert run(cache.lookup, tenant_id=7, key=key_for(tenant_id=7)) == ANSWER
    assert run(cache.lookup, tenant_id=8, key=key_for(tenant_id=8)) is None
