import asyncio
import socket
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from gateway import limits
from gateway.errors import BudgetExceeded, RateLimited
from gateway.tasks import reconcile_reservations
from tests.limits.conftest import (
    USD,
    DelayingProxy,
    admit,
    budget_state,
    dead_redis_url,
    make_key,
    run,
    settle,
    spend,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def redis_down(settings):
    real = settings.REDIS_URL
    settings.REDIS_URL = dead_redis_url()
    yield settings
    settings.REDIS_URL = real


@pytest.fixture
def blackhole(settings):
    """A TCP port that accepts connections and never answers (a hung Redis)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(512)
    real = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    yield settings
    settings.REDIS_URL = real
    server.close()


def test_rate_limits_fail_open_by_default_when_redis_is_unreachable(tenant, redis_down):
    key = make_key(tenant, rpm=1)
    for i in range(3):
        admission = admit(key, request_id=f"r{i}")
        assert admission.degraded and admission.headers == {}


def test_rate_limits_fail_closed_when_configured(tenant, redis_down):
    redis_down.SENTINEL_RATE_LIMIT_FAIL_OPEN = False
    key = make_key(tenant, rpm=100)
    with pytest.raises(RateLimited) as denied:
        admit(key, request_id="r")
    assert denied.value.code == "rate_limiter_unavailable"
    assert denied.value.headers["retry-after"] == "1"


def test_budgets_fall_back_to_the_ledger_and_count_this_processes_requests_in_flight(tenant, redis_down):
    key = make_key(tenant, budget_usd=USD("0.10"))
    spend(tenant, key, 90_000, at=timezone.now(), request_id="earlier")
    with pytest.raises(BudgetExceeded):
        admit(key, reserve=20_000, request_id="too-big")
    first = admit(key, reserve=5_000, request_id="first")
    assert first.degraded
    with pytest.raises(BudgetExceeded):
        admit(key, reserve=6_000, request_id="no-room-while-first-in-flight")
    settle(key, first, micros=5_000)
    # Settled but not yet in the ledger (written asynchronously): still counted here.
    with pytest.raises(BudgetExceeded):
        admit(key, reserve=6_000, request_id="still-no-room")
    admit(key, reserve=4_000, request_id="fits")


def test_concurrent_fallback_admissions_do_not_overspend_within_a_process(tenant, redis_down):
    key = make_key(tenant, budget_usd=USD("0.05"))

    async def burst():
        return await asyncio.gather(
            *(limits.admit(key=key, tokens=1, reserve_micros=10_000, request_id=f"b{i}") for i in range(30)),
            return_exceptions=True,
        )

    results = run(burst)
    assert sum(isinstance(r, limits.Admission) for r in results) == 5
    assert sum(isinstance(r, BudgetExceeded) for r in results) == 25


def test_a_hung_redis_costs_two_timeouts_once_then_is_skipped_for_the_back_off(tenant, blackhole):
    blackhole.SENTINEL_LIMITS_REDIS_TIMEOUT = 0.25  # then a second chance of 1 s
    blackhole.SENTINEL_REDIS_DOWN_BACKOFF = 0.5
    key = make_key(tenant, rpm=5)

    async def timed(n):
        started = time.perf_counter()
        for i in range(n):
            await limits.admit(key=key, tokens=1, reserve_micros=0, request_id=f"h{n}-{i}")
        return time.perf_counter() - started

    first = run(timed, 1)
    assert 1.2 <= first < 1.8
    assert run(timed, 50) < 0.2  # marked down: no request waits for Redis
    time.sleep(0.6)
    assert 1.2 <= run(timed, 1) < 1.8  # the back-off is over: Redis is tried again


def test_an_admission_repeated_after_a_timeout_keeps_its_single_reservation(tenant, rdb, settings):
    key = make_key(tenant, rpm=10, budget_usd=USD("1"))
    settle(key, admit(key, reserve=1, request_id="warm"), micros=0)  # the budget is in Redis
    proxy = DelayingProxy(settings.REDIS_URL, delay=0.6).start()
    real = settings.REDIS_URL
    settings.SENTINEL_LIMITS_REDIS_TIMEOUT = 0.25
    settings.REDIS_URL = proxy.url
    try:
        admission = admit(key, reserve=7_000, request_id="slow")
    finally:
        proxy.stop()
        settings.REDIS_URL = real
    assert proxy.used
    # The repeat found the reservation its timed-out first attempt made (so no headers to report).
    assert admission.reservation_id == "slow" and not admission.degraded and admission.headers == {}
    state = budget_state(rdb, admission.budgets[0])
    assert state["reserved"] == "7000" and state["r:slow"] == "7000"
    assert not limits.redis_marked_down()
    after = admit(key, reserve=1, request_id="after")
    assert after.headers["x-ratelimit-remaining-requests"] == "7"  # warm, slow (counted once), after


def test_timeouts_get_a_second_chance_and_a_third_only_when_this_process_is_the_bottleneck(settings):
    settings.SENTINEL_LIMITS_REDIS_TIMEOUT = 0.25
    assert limits.next_timeout(limits.RedisSlow("slow"), 1) == 1.0
    assert limits.next_timeout(limits.RedisSlow("slow", overloaded=True), 2) == limits.PATIENT_TIMEOUT
    assert not limits.redis_marked_down()
    assert limits.next_timeout(limits.RedisSlow("slow"), 2) is None
    assert limits.redis_marked_down()


def test_a_settlement_redis_missed_is_replayed_when_it_answers_again(tenant, rdb, settings):
    key = make_key(tenant, budget_usd=USD("1"))
    admission = admit(key, reserve=40_000, request_id="r")
    real = settings.REDIS_URL
    settings.REDIS_URL = dead_redis_url()
    settle(key, admission, micros=12_345)  # never raises
    settings.REDIS_URL = real
    assert budget_state(rdb, admission.budgets[0])["reserved"] == "40000"
    limits.mark_redis_up()
    assert run(limits.replay_pending_settlements) == 0
    assert budget_state(rdb, admission.budgets[0]) == {"spent": "12345", "reserved": "0"}
    assert run(limits.replay_pending_settlements) == 0
    assert budget_state(rdb, admission.budgets[0])["spent"] == "12345"


def test_spend_admitted_during_an_outage_reaches_redis_when_it_returns(tenant, rdb, settings):
    key = make_key(tenant, budget_usd=USD("1"))
    before = admit(key, reserve=1_000, request_id="before")
    settle(key, before, micros=1_000)
    real = settings.REDIS_URL
    settings.REDIS_URL = dead_redis_url()
    during = admit(key, reserve=5_000, request_id="during")
    assert during.degraded
    settle(key, during, micros=2_500)
    settings.REDIS_URL = real
    limits.mark_redis_up()
    admit(key, reserve=1, request_id="after")  # a successful call replays what is pending
    deadline = time.monotonic() + 2
    while budget_state(rdb, before.budgets[0])["spent"] != "3500" and time.monotonic() < deadline:
        run(limits.replay_pending_settlements)
    assert budget_state(rdb, before.budgets[0])["spent"] == "3500"


def test_outage_spend_is_not_added_twice_to_a_budget_rebuilt_from_the_ledger(tenant, rdb, settings):
    key = make_key(tenant, budget_usd=USD("1"))
    real = settings.REDIS_URL
    settings.REDIS_URL = dead_redis_url()
    during = admit(key, reserve=5_000, request_id="during")
    settle(key, during, micros=2_500)
    spend(tenant, key, 2_500, at=timezone.now(), request_id="during")  # its event, written to the ledger
    settings.REDIS_URL = real
    limits.mark_redis_up()
    after = admit(key, reserve=100, request_id="after")  # Redis came back empty: rebuilt from the ledger
    assert run(limits.replay_pending_settlements) == 0
    assert budget_state(rdb, after.budgets[0])["spent"] == "2500"


def test_embedded_default_without_redis_enforces_limits_in_process(tenant, settings):
    settings.REDIS_URL = None
    key = make_key(tenant, rpm=2, budget_usd=USD("0.01"))
    spend(tenant, key, 4_000, at=timezone.now(), request_id="earlier")
    a = admit(key, reserve=3_000, request_id="a")
    assert a.headers["x-ratelimit-remaining-requests"] == "1" and not a.degraded
    with pytest.raises(BudgetExceeded):
        admit(key, reserve=3_001, request_id="b")
    settle(key, a, micros=1_000)
    admit(key, reserve=5_000, request_id="c")
    with pytest.raises(RateLimited):
        admit(key, reserve=1, request_id="d")


def test_reconcile_releases_reservations_whose_process_died(tenant, rdb, settings):
    settings.SENTINEL_RESERVATION_TTL = 60
    key = make_key(tenant, budget_usd=USD("0.02"))
    now = timezone.now()
    dead = admit(key, reserve=15_000, request_id="dead", now=now)
    with pytest.raises(BudgetExceeded):
        admit(key, reserve=10_000, request_id="blocked", now=now)

    assert limits.reservations_reconcile(now=now + timedelta(seconds=59)).released == 0
    result = limits.reservations_reconcile(now=now + timedelta(seconds=61))
    assert (result.released, result.released_micros) == (1, 15_000)
    assert budget_state(rdb, dead.budgets[0])["reserved"] == "0"
    assert limits.reservations_reconcile(now=now + timedelta(seconds=62)).released == 0
    admit(key, reserve=10_000, request_id="room-again", now=now + timedelta(seconds=61))

    # The process was only slow: its late settle still counts its spend, once.
    settle(key, dead, micros=4_000)
    settle(key, dead, micros=4_000)
    state = budget_state(rdb, dead.budgets[0])
    assert state["spent"] == "4000" and state["reserved"] == "10000"


def test_expired_markers_nobody_settles_are_dropped_after_the_grace_hour(tenant, rdb, settings):
    settings.SENTINEL_RESERVATION_TTL = 10
    key = make_key(tenant, budget_usd=USD("1"))
    now = timezone.now()
    gone = admit(key, reserve=500, request_id="gone", now=now)
    assert limits.reservations_reconcile(now=now + timedelta(seconds=11)).released == 1
    assert budget_state(rdb, gone.budgets[0])["r:gone"] == "e"
    result = limits.reservations_reconcile(now=now + timedelta(seconds=11, hours=1, minutes=1))
    assert result.dropped == 1
    assert "r:gone" not in budget_state(rdb, gone.budgets[0])
    assert rdb.zcard(limits.reservations_index_key()) == 0


def test_the_celery_task_reconciles(tenant, rdb, settings):
    settings.SENTINEL_RESERVATION_TTL = 0.001
    key = make_key(tenant, budget_usd=USD("1"))
    admission = admit(key, reserve=700, request_id="t")
    time.sleep(0.01)
    assert reconcile_reservations.delay().get() == {"released": 1, "released_micros": 700, "dropped": 0}
    assert budget_state(rdb, admission.budgets[0])["reserved"] == "0"
    assert reconcile_reservations() == {"released": 0, "released_micros": 0, "dropped": 0}
