import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from billing.models import UsageEvent
from gateway import limits
from gateway.errors import BudgetExceeded
from tests.factories import TenantFactory
from tests.limits.conftest import USD, admit, budget_state, make_key, run, settle, spend

pytestmark = pytest.mark.django_db


def test_64_concurrent_admissions_against_room_for_10_admit_exactly_10(tenant, rdb):
    key = make_key(tenant, budget_usd=USD("0.10"), budget_period="month")

    async def burst():
        return await asyncio.gather(
            *(limits.admit(key=key, tokens=10, reserve_micros=10_000, request_id=f"req-{i}") for i in range(64)),
            return_exceptions=True,
        )

    results = run(burst)
    admitted = [r for r in results if isinstance(r, limits.Admission)]
    denied = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(admitted) == 10
    assert len(denied) == 54
    assert all(d.status == 429 and d.type == "insufficient_quota" for d in denied)

    for admission in admitted:
        settle(key, admission, micros=10_000)
        spend(tenant, key, 10_000, at=timezone.now(), request_id=admission.reservation_id)
    state = budget_state(rdb, admitted[0].budgets[0])
    assert state["spent"] == "100000" and state["reserved"] == "0"
    recorded = sum(UsageEvent.objects.filter(tenant=tenant).values_list("cost_micros", flat=True))
    assert recorded <= 100_000


def test_concurrency_overspend_is_impossible_when_actual_cost_stays_within_reservation(tenant, rdb):
    key = make_key(tenant, budget_usd=USD("0.05"), budget_period="day")

    async def waves():
        outcomes = []
        for wave in range(4):
            results = await asyncio.gather(
                *(limits.admit(key=key, tokens=1, reserve_micros=3_000, request_id=f"w{wave}-{i}") for i in range(20)),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, limits.Admission):
                    await limits.settle(key=key, admission=result, actual_micros=2_000, actual_tokens=1)
                    outcomes.append(result)
        return outcomes

    admitted = run(waves)
    state = budget_state(rdb, admitted[0].budgets[0])
    assert int(state["spent"]) == 2_000 * len(admitted) <= 50_000
    assert state["reserved"] == "0"
    assert len(admitted) == 24  # 16 fit at 3k reserved each in the first wave; then room for 2k-spent ones


def test_denied_request_reserves_nothing(tenant, rdb):
    key = make_key(tenant, budget_usd=USD("0.01"))
    first = admit(key, reserve=6_000, request_id="a")
    with pytest.raises(BudgetExceeded) as denied:
        admit(key, reserve=6_000, request_id="b")
    assert "budget" in denied.value.message and denied.value.headers["x-should-retry"] == "false"
    state = budget_state(rdb, first.budgets[0])
    assert state["reserved"] == "6000"
    assert "r:b" not in state


def test_settle_replaces_the_reservation_by_the_actual_cost_once(tenant, rdb):
    key = make_key(tenant, budget_usd=USD("1"))
    admission = admit(key, reserve=50_000, request_id="req-x")
    assert budget_state(rdb, admission.budgets[0])["reserved"] == "50000"
    settle(key, admission, micros=1_234)
    settle(key, admission, micros=1_234)  # a retried settle is a no-op
    state = budget_state(rdb, admission.budgets[0])
    assert state == {"spent": "1234", "reserved": "0"}
    assert rdb.zscore(limits.reservations_index_key(), f"{admission.budgets[0]}|req-x") is None


def test_key_and_tenant_budgets_both_apply_and_the_tenant_one_is_shared(rdb):
    tenant = TenantFactory(budget_usd=USD("0.03"), budget_period="month")
    one = make_key(tenant, name="one", budget_usd=USD("1"))
    two = make_key(tenant, name="two")
    a = admit(one, reserve=20_000, request_id="a")
    assert len(a.budgets) == 2
    with pytest.raises(BudgetExceeded) as denied:
        admit(two, reserve=20_000, request_id="b")
    assert "This tenant" in denied.value.message
    assert denied.value.scope == "tenant"
    settle(one, a, micros=5_000)
    b = admit(two, reserve=20_000, request_id="b")
    assert b.budgets == [limits.applicable_budgets(key=two, at=timezone.now())[0].redis_key]


def test_budget_is_rebuilt_from_the_ledger_when_redis_has_no_state(tenant, other_tenant, rdb):
    key = make_key(tenant, budget_usd=USD("0.10"), budget_period="month")
    sibling = make_key(tenant, name="sibling")
    theirs = make_key(other_tenant, name="theirs")
    now = timezone.now()
    spend(tenant, key, 30_000, at=now - timedelta(minutes=5), request_id="old-1")
    spend(tenant, key, 40_000, at=now - timedelta(minutes=1), request_id="old-2")
    spend(tenant, sibling, 500_000, at=now, request_id="sibling-1")  # another key of the tenant
    spend(other_tenant, theirs, 900_000, at=now, request_id="theirs-1")  # another tenant
    last_month = limits.budget_period_bounds(period="month", tz_name="UTC", at=now)[1] - timedelta(seconds=1)
    spend(tenant, key, 800_000, at=last_month, request_id="last-month")

    admission = admit(key, reserve=30_000, request_id="fits")
    assert budget_state(rdb, admission.budgets[0])["spent"] == "70000"
    with pytest.raises(BudgetExceeded):
        admit(key, reserve=1, request_id="no-room")

    rdb.delete(admission.budgets[0])  # Redis restarted empty / flushed
    settle(key, admission, micros=30_000)  # its reservation is gone: settles into nothing
    spend(tenant, key, 30_000, at=now, request_id="fits")  # ...and its event reaches the ledger
    with pytest.raises(BudgetExceeded):
        admit(key, reserve=1, request_id="after-restart")
    assert budget_state(rdb, admission.budgets[0])["spent"] == "100000"


def test_hot_path_runs_no_sql_once_the_budget_is_in_redis(tenant, django_assert_num_queries):
    key = make_key(tenant, budget_usd=USD("1"))
    admit(key, request_id="warm")
    with django_assert_num_queries(0):
        admission = admit(key, request_id="hot")
        settle(key, admission, micros=10)


def test_daily_budget_resets_at_midnight_on_the_tenants_calendar(rdb):
    tenant = TenantFactory(timezone="America/New_York")
    key = make_key(tenant, budget_usd=USD("0.01"), budget_period="day")
    # 2025-03-10 23:30 in New York is 2025-03-11 03:30 UTC (EDT, -4).
    late_evening = datetime(2025, 3, 11, 3, 30, tzinfo=UTC)
    spend(tenant, key, 10_000, at=late_evening - timedelta(hours=1), request_id="same-local-day")
    with pytest.raises(BudgetExceeded):
        admit(key, reserve=1, request_id="a", now=late_evening)
    after_midnight = datetime(2025, 3, 11, 4, 1, tzinfo=UTC)  # 00:01 in New York
    admission = admit(key, reserve=10_000, request_id="b", now=after_midnight)
    assert admission.budgets[0].endswith(f":budget:key:{key.pk}:d20250311")


def test_period_bounds_follow_the_tenant_timezone_and_dst():
    start_day = limits.budget_period_bounds(
        period="day", tz_name="Europe/Paris", at=datetime(2025, 3, 30, 12, tzinfo=UTC)
    )
    assert start_day == (
        "d20250330",
        datetime(2025, 3, 29, 23, tzinfo=UTC),
        datetime(2025, 3, 30, 22, tzinfo=UTC),  # a 23-hour day: clocks go forward
    )
    month = limits.budget_period_bounds(period="month", tz_name="Asia/Tokyo", at=datetime(2025, 12, 31, 16, tzinfo=UTC))
    assert month == ("m202601", datetime(2025, 12, 31, 15, tzinfo=UTC), datetime(2026, 1, 31, 15, tzinfo=UTC))
    assert limits.budget_period_bounds(period="total", tz_name="UTC", at=datetime(2025, 1, 1, tzinfo=UTC)) == (
        "total",
        None,
        None,
    )


def test_total_budget_counts_the_whole_ledger(tenant, rdb):
    key = make_key(tenant, budget_usd=USD("0.05"), budget_period="total")
    spend(tenant, key, 49_000, at=timezone.now() - timedelta(days=400), request_id="ancient")
    with pytest.raises(BudgetExceeded):
        admit(key, reserve=2_000, request_id="a")
    admission = admit(key, reserve=1_000, request_id="b")
    assert admission.budgets[0].endswith(":total")


def test_a_reused_request_id_gets_its_own_reservation(tenant, rdb):
    key = make_key(tenant, budget_usd=USD("1"))
    first = admit(key, reserve=100, request_id="dup")
    second = admit(key, reserve=200, request_id="dup")
    assert first.reservation_id == "dup" and second.reservation_id.startswith("dup.")
    settle(key, first, micros=100)
    settle(key, second, micros=200)
    assert budget_state(rdb, first.budgets[0]) == {"spent": "300", "reserved": "0"}


def test_no_limits_and_no_budgets_skip_redis(tenant, rdb):
    key = make_key(tenant)
    admission = admit(key, request_id="free")
    assert admission.headers == {} and admission.budgets == []
    settle(key, admission, micros=123)
    assert rdb.keys(f"*t:{tenant.pk}:*") == []


def test_budget_of_zero_refuses_everything(tenant):
    key = make_key(tenant, budget_usd=USD("0"))
    with pytest.raises(BudgetExceeded):
        admit(key, reserve=1, request_id="a")


def test_estimate_reserve_is_the_worst_case_cost():
    quote = limits.Quote(1, USD("1"), USD("0.5"), USD("2"))
    assert limits.estimate_reserve_micros(quote, 1000, 500) == 1000 + 1000
    assert limits.estimate_reserve_micros(quote, 1000, 5000, model_cap=1000) == 1000 + 2000
    assert limits.estimate_reserve_micros(quote, 1000, None, model_cap=300) == 1000 + 600
    assert limits.estimate_reserve_micros(quote, 10, None) == 10 + 2 * limits.DEFAULT_OUTPUT_TOKENS
    marked_up = limits.Quote(1, USD("1"), USD("0.5"), USD("2"), adjustment_percent=USD("10"))
    assert limits.estimate_reserve_micros(marked_up, 1000, 500) == 2200


def test_prompt_estimate_is_generous_for_ascii_and_cjk():
    english = [{"role": "user", "content": "hello world " * 100}]
    assert limits.estimate_prompt_tokens(english) >= 1200 / 4
    cjk = [{"role": "user", "content": [{"type": "text", "text": "漢字" * 100}]}]
    assert limits.estimate_prompt_tokens(cjk) >= 200
