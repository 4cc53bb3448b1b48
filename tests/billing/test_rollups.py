import random
from datetime import UTC, date, datetime, timedelta

import pytest
from django.db.models import Count, Sum
from django.utils import timezone

from billing.models import DailyBreakdown, DailyUsage, HourlyUsage, PendingRollup, UsageEvent
from billing.services import usage_events_insert, usage_rollup_days, usage_rollup_pending, usage_rollup_window
from tests.billing.conftest import make_key, usage

pytestmark = pytest.mark.django_db


def sums(queryset, *group):
    return {
        tuple(row[g] for g in group): (row["n"], row["c"], row["p"])
        for row in queryset.values(*group).annotate(n=Sum("requests"), c=Sum("cost_micros"), p=Sum("prompt_tokens"))
    }


def ledger_sums(tenant):
    rows = (
        UsageEvent.objects.filter(tenant=tenant)
        .values("api_key_id", "model")
        .annotate(n=Count("pk"), c=Sum("cost_micros"), p=Sum("prompt_tokens"))
    )
    return {(r["api_key_id"], r["model"]): (r["n"], r["c"], r["p"]) for r in rows}


def scattered(tenant, keys, n, *, days=20, seed=1):
    rng = random.Random(seed)
    now = timezone.now()
    return [
        usage(
            tenant,
            rng.choice(keys),
            at=now - timedelta(seconds=rng.randint(0, days * 86400)),
            model=rng.choice(["gpt-test", "claude-test"]),
            prompt=rng.randint(1, 5000),
            completion=rng.randint(0, 800),
            cost=rng.randint(0, 90_000),
            status=rng.choice(["ok", "ok", "ok", "error", "client_closed"]),
            tags=rng.choice([{}, {"project": "alpha"}, {"project": "beta", "agent": "triage"}]),
        )
        for _ in range(n)
    ]


def test_rollups_equal_the_ledger_per_key_and_model_hour_and_day(tenant, other_tenant, keys, other_keys):
    other_tenant.timezone = "America/New_York"
    other_tenant.save(update_fields=["timezone"])
    usage_events_insert(records=scattered(tenant, keys, 600) + scattered(other_tenant, other_keys, 400, seed=2))

    result = usage_rollup_pending()

    assert result.tenants == 2 and not PendingRollup.objects.exists()
    for t in (tenant, other_tenant):
        assert sums(DailyUsage.objects.filter(tenant=t), "api_key_id", "model") == ledger_sums(t)
        assert sums(HourlyUsage.objects.filter(tenant=t), "api_key_id", "model") == ledger_sums(t)


def test_rerunning_any_window_changes_nothing(tenant, keys):
    usage_events_insert(records=scattered(tenant, keys, 300))
    usage_rollup_pending()
    before = sorted(DailyUsage.objects.filter(tenant=tenant).values_list("day", "model", "requests", "cost_micros"))

    usage_rollup_days(tenant=tenant, first=date.today() - timedelta(days=30), last=date.today())
    usage_rollup_window(tenant=tenant, start=timezone.now() - timedelta(days=3), end=timezone.now())
    usage_rollup_days(tenant=tenant, first=date.today() - timedelta(days=5), last=date.today() - timedelta(days=4))

    after = sorted(DailyUsage.objects.filter(tenant=tenant).values_list("day", "model", "requests", "cost_micros"))
    assert after == before
    assert sums(HourlyUsage.objects.filter(tenant=tenant), "api_key_id", "model") == ledger_sums(tenant)


def test_a_late_event_updates_the_old_day_it_belongs_to(tenant, keys):
    ten_days_ago = (timezone.now() - timedelta(days=10)).replace(hour=12)
    usage_events_insert(records=[usage(tenant, keys[0], at=ten_days_ago, cost=1_000)])
    usage_rollup_pending()

    usage_events_insert(records=[usage(tenant, keys[0], at=ten_days_ago + timedelta(minutes=1), cost=234)])
    usage_rollup_pending()

    day = DailyUsage.objects.get(tenant=tenant, day=ten_days_ago.date())
    assert (day.requests, day.cost_micros) == (2, 1_234)


def test_days_are_the_tenants_calendar_days(tenant, user):
    tenant.timezone = "Asia/Kolkata"  # UTC+05:30: an UTC hour straddles two local days
    tenant.save(update_fields=["timezone"])
    key = make_key(tenant, user, "k")
    usage_events_insert(
        records=[
            usage(tenant, key, at=datetime(2026, 3, 9, 18, 15, tzinfo=UTC), cost=1),  # 23:45 on Mar 9 in Kolkata
            usage(tenant, key, at=datetime(2026, 3, 9, 18, 45, tzinfo=UTC), cost=10),  # 00:15 on Mar 10
            usage(tenant, key, at=datetime(2026, 3, 10, 18, 29, tzinfo=UTC), cost=100),  # 23:59 on Mar 10
        ]
    )

    usage_rollup_pending()

    days = dict(DailyUsage.objects.filter(tenant=tenant).values_list("day", "cost_micros"))
    assert days == {date(2026, 3, 9): 1, date(2026, 3, 10): 110}
    hours = dict(HourlyUsage.objects.filter(tenant=tenant).values_list("hour", "cost_micros"))
    assert hours == {datetime(2026, 3, 9, 18, tzinfo=UTC): 11, datetime(2026, 3, 10, 18, tzinfo=UTC): 100}


def test_each_tag_set_is_its_own_rollup_row(tenant, keys):
    at = timezone.now()
    usage_events_insert(
        records=[
            usage(tenant, keys[0], at=at, cost=5, tags={"project": "a"}),
            usage(tenant, keys[0], at=at, cost=7, tags={"project": "a"}),
            usage(tenant, keys[0], at=at, cost=11, tags={"project": "b", "agent": "x"}),
            usage(tenant, keys[0], at=at, cost=13),
        ]
    )

    usage_rollup_pending()

    rows = {
        str(sorted(r.tags.items())): r.cost_micros
        for r in DailyUsage.objects.filter(tenant=tenant, day=timezone.localdate(at, timezone=UTC))
    }
    assert rows == {"[('project', 'a')]": 12, "[('agent', 'x'), ('project', 'b')]": 11, "[]": 13}


def test_the_daily_breakdown_adds_up_to_the_ledger_along_every_dimension(tenant, keys):
    records = scattered(tenant, keys, 500, seed=7)
    records[0].tags = {"project": ""}  # an empty value counts as untagged
    usage_events_insert(records=records)
    usage_rollup_pending()
    events = UsageEvent.objects.filter(tenant=tenant)

    def breakdown(dimension):
        rows = DailyBreakdown.objects.filter(tenant=tenant, dimension=dimension)
        return {r["value"]: r["c"] for r in rows.values("value").annotate(c=Sum("cost_micros"))}

    assert breakdown("total") == {"": events.aggregate(c=Sum("cost_micros"))["c"]}
    assert breakdown("model") == {r["model"]: r["c"] for r in events.values("model").annotate(c=Sum("cost_micros"))}
    assert breakdown("key") == {
        str(r["api_key_id"]): r["c"] for r in events.values("api_key_id").annotate(c=Sum("cost_micros"))
    }
    expected = {}
    for r in records:
        if r.tags.get("project"):
            expected[r.tags["project"]] = expected.get(r.tags["project"], 0) + r.cost_micros
    assert breakdown("tag:project") == expected
    assert breakdown("tag:agent") == {"triage": sum(r.cost_micros for r in records if r.tags.get("agent") == "triage")}
