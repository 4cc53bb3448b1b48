import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from gateway import limits
from gateway.errors import RateLimited
from tests.factories import TenantFactory
from tests.limits.conftest import USD, admit, budget_state, make_key, run, settle

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_rpm_admits_exactly_the_limit_then_429_with_retry_after_and_headers(tenant):
    key = make_key(tenant, rpm=3)
    seen = [admit(key, request_id=f"r{i}", now=T0).headers for i in range(3)]
    assert [h["x-ratelimit-remaining-requests"] for h in seen] == ["2", "1", "0"]
    assert seen[0]["x-ratelimit-limit-requests"] == "3"
    assert seen[0]["x-ratelimit-reset-requests"] == "20s"
    assert seen[2]["x-ratelimit-reset-requests"] == "1m0s"
    with pytest.raises(RateLimited) as denied:
        admit(key, request_id="r4", now=T0)
    exc = denied.value
    assert exc.status == 429 and exc.code == "rate_limit_exceeded" and exc.scope == "key"
    assert "this API key" in exc.message and "requests per minute" in exc.message
    assert exc.headers["retry-after"] == "20"
    assert exc.headers["x-ratelimit-remaining-requests"] == "0"
    assert exc.headers["x-ratelimit-limit-requests"] == "3"


def test_concurrent_requests_share_the_limit_exactly(tenant):
    key = make_key(tenant, rpm=25)

    async def burst():
        return await asyncio.gather(
            *(limits.admit(key=key, tokens=1, reserve_micros=0, request_id=f"c{i}") for i in range(80)),
            return_exceptions=True,
        )

    results = run(burst)
    assert sum(isinstance(r, limits.Admission) for r in results) == 25
    assert sum(isinstance(r, RateLimited) for r in results) == 55


def test_the_limit_refills_continuously(tenant):
    key = make_key(tenant, rpm=6)  # one request every 10 s, burst of 6
    for i in range(6):
        admit(key, request_id=f"a{i}", now=T0)
    with pytest.raises(RateLimited):
        admit(key, request_id="b", now=T0 + timedelta(seconds=9))
    admit(key, request_id="c", now=T0 + timedelta(seconds=10))
    with pytest.raises(RateLimited) as denied:
        admit(key, request_id="d", now=T0 + timedelta(seconds=15))
    assert denied.value.headers["retry-after"] == "5"
    headers = admit(key, request_id="e", now=T0 + timedelta(seconds=80)).headers
    assert headers["x-ratelimit-remaining-requests"] == "5"


def test_a_denied_request_is_not_counted(tenant):
    key = make_key(tenant, rpm=2)
    admit(key, request_id="a", now=T0)
    admit(key, request_id="b", now=T0)
    for i in range(10):
        with pytest.raises(RateLimited):
            admit(key, request_id=f"x{i}", now=T0 + timedelta(seconds=29))
    admit(key, request_id="c", now=T0 + timedelta(seconds=30))


def test_tenant_default_applies_to_keys_without_their_own_limit_and_a_key_override_wins():
    tenant = TenantFactory(default_rpm=1)
    plain = make_key(tenant, name="plain")
    generous = make_key(tenant, name="generous", rpm=5)
    admit(plain, request_id="p1", now=T0)
    with pytest.raises(RateLimited):
        admit(plain, request_id="p2", now=T0)
    for i in range(5):
        admit(generous, request_id=f"g{i}", now=T0)


def test_tenant_wide_limit_is_shared_by_every_key_and_headers_show_the_tightest():
    tenant = TenantFactory(rpm=3)
    one = make_key(tenant, name="one", rpm=10)
    two = make_key(tenant, name="two", rpm=10)
    headers = admit(one, request_id="a", now=T0).headers
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-remaining-requests"] == "2"
    admit(two, request_id="b", now=T0)
    admit(one, request_id="c", now=T0)
    with pytest.raises(RateLimited) as denied:
        admit(two, request_id="d", now=T0)
    assert denied.value.scope == "tenant" and "this tenant" in denied.value.message


def test_other_tenants_have_their_own_counters(tenant, other_tenant):
    mine = make_key(tenant, rpm=1)
    theirs = make_key(other_tenant, rpm=1)
    admit(mine, request_id="a", now=T0)
    admit(theirs, request_id="b", now=T0)
    with pytest.raises(RateLimited):
        admit(mine, request_id="c", now=T0)


def test_tpm_counts_estimated_tokens_and_settle_corrects_to_actual(tenant):
    key = make_key(tenant, tpm=1000)
    first = admit(key, tokens=600, request_id="a")
    assert first.headers["x-ratelimit-limit-tokens"] == "1000"
    assert first.headers["x-ratelimit-remaining-tokens"] == "400"
    with pytest.raises(RateLimited) as denied:
        admit(key, tokens=600, request_id="b")
    assert "tokens per minute" in denied.value.message
    # The request used 100 tokens, not 600: the difference is given back.
    run(limits.settle, key=key, admission=first, actual_micros=0, actual_tokens=100)
    second = admit(key, tokens=600, request_id="c")
    assert 290 <= int(second.headers["x-ratelimit-remaining-tokens"]) <= 310  # (+ refill while the test runs)


def test_tokens_used_beyond_the_estimate_are_charged_to_the_next_requests(tenant):
    key = make_key(tenant, tpm=1000)
    first = admit(key, tokens=100, request_id="a")
    run(limits.settle, key=key, admission=first, actual_micros=0, actual_tokens=900)
    with pytest.raises(RateLimited):
        admit(key, tokens=200, request_id="b")


def test_a_request_larger_than_the_tpm_limit_is_refused_without_counting(tenant, rdb):
    key = make_key(tenant, tpm=100, rpm=5)
    with pytest.raises(RateLimited) as denied:
        admit(key, tokens=101, request_id="huge")
    assert denied.value.code == "request_too_large"
    assert denied.value.headers["x-should-retry"] == "false"
    assert rdb.keys(f"*t:{tenant.pk}:rl:*") == []


def test_a_limit_of_zero_allows_nothing(tenant):
    key = make_key(tenant, rpm=0)
    with pytest.raises(RateLimited):
        admit(key, request_id="a")


def test_budget_denial_leaves_rate_limits_uncounted(tenant, rdb):
    key = make_key(tenant, rpm=2, budget_usd=USD("0.001"))
    with pytest.raises(limits.BudgetExceeded):
        admit(key, reserve=5_000, request_id="a", now=T0)
    assert rdb.keys(f"*t:{tenant.pk}:rl:*") == []
    admit(key, reserve=10, request_id="b", now=T0)
    admission = admit(key, reserve=10, request_id="c", now=T0)
    assert admission.headers["x-ratelimit-remaining-requests"] == "0"
    assert budget_state(rdb, admission.budgets[0])["reserved"] == "20"


def test_headers_name_only_the_limits_that_apply(tenant):
    key = make_key(tenant, tpm=5000, budget_usd=USD("1"))
    headers = admit(key, tokens=50, request_id="a").headers
    assert set(headers) == {"x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"}


@pytest.mark.parametrize(
    ("us", "text"),
    [
        (0, "0ms"),
        (120_400, "121ms"),
        (1_000_000, "1s"),
        (1_500_000, "1.5s"),
        (360_000_000, "6m0s"),
        (61_250_000, "1m1.25s"),
    ],
)
def test_reset_durations_use_openais_format(us, text):
    assert limits.format_duration(us) == text


def test_settle_corrects_tokens_once_even_if_retried(tenant):
    key = make_key(tenant, tpm=1000, budget_usd=USD("1"))
    first = admit(key, tokens=500, request_id="a")
    admit(key, tokens=300, request_id="b")
    settle(key, first, micros=1, tokens=400)
    settle(key, first, micros=1, tokens=400)
    # 400 + 300 used: room for 300 more, not for 350 (it would be if the 100 came back twice).
    admit(key, tokens=300, request_id="c")
    with pytest.raises(RateLimited):
        admit(key, tokens=50, request_id="d")
