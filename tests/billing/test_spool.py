import json
from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone
from prometheus_client import REGISTRY

from audit.models import RequestLog
from billing.models import PendingRollup, UsageEvent
from billing.services import usage_events_insert, usage_spool_drain
from billing.services.spool import FIELD, GROUP, dead_letter_key, spool_key
from sentinel_site import redis as sredis
from tests.billing.conftest import submit_all, usage
from tests.conftest import free_port


def spool():
    return sredis.sync_client()


def pending_count() -> int:
    return spool().xpending(spool_key(), GROUP)["pending"]


@pytest.mark.django_db
def test_a_request_id_reaches_the_ledger_once_however_often_it_is_offered(tenant, keys):
    now = timezone.now()
    first = [usage(tenant, keys[0], at=now, request_id=f"req_once_{i}", cost=100 + i) for i in range(5)]
    again = [usage(tenant, keys[0], at=now, request_id=f"req_once_{i}", cost=999) for i in range(3, 8)]

    assert [r.request_id for r in usage_events_insert(records=first + first)] == [r.request_id for r in first]
    new = usage_events_insert(records=again)

    assert [r.request_id for r in new] == ["req_once_5", "req_once_6", "req_once_7"]
    assert UsageEvent.objects.filter(tenant=tenant).count() == 8
    assert UsageEvent.objects.get(request_id="req_once_3").cost_micros == 103  # the first write wins
    assert RequestLog.objects.filter(tenant=tenant).count() == 8
    assert PendingRollup.objects.filter(tenant=tenant).exists()


@pytest.mark.django_db
def test_the_ledger_write_moves_each_keys_last_used_forward_never_back(tenant, keys):
    now = timezone.now()
    usage_events_insert(
        records=[
            usage(tenant, keys[0], at=now - timedelta(minutes=5), request_id="req_lu_1", cost=1),
            usage(tenant, keys[0], at=now, request_id="req_lu_2", cost=1),
        ]
    )
    usage_events_insert(records=[usage(tenant, keys[0], at=now - timedelta(hours=1), request_id="req_lu_3", cost=1)])

    keys[0].refresh_from_db()
    keys[1].refresh_from_db()
    assert keys[0].last_used_at == now  # the late, older event did not move it back
    assert keys[1].last_used_at is None


@pytest.mark.django_db
def test_submitted_usage_waits_in_the_spool_until_the_drain_commits_it(tenant, keys):
    records = [usage(tenant, keys[i % 2], at=timezone.now(), cost=1000 + i) for i in range(30)]
    submit_all(records)

    assert spool().xlen(spool_key()) == 30
    assert not UsageEvent.objects.filter(tenant=tenant).exists()

    result = usage_spool_drain(max_seconds=5, batch_size=7)

    assert (result.read, result.inserted, result.duplicates, result.remaining) == (30, 30, 0, 0)
    assert UsageEvent.objects.filter(tenant=tenant).aggregate(s=Sum("cost_micros"))["s"] == sum(
        r.cost_micros for r in records
    )
    assert RequestLog.objects.filter(tenant=tenant).count() == 30
    assert spool().xlen(spool_key()) == 0 and pending_count() == 0
    assert REGISTRY.get_sample_value("sentinel_usage_spool_lag") == 0


@pytest.mark.django_db
def test_a_record_submitted_twice_is_charged_once(tenant, keys):
    record = usage(tenant, keys[0], at=timezone.now(), cost=4321)
    submit_all([record, record])

    result = usage_spool_drain(max_seconds=5)

    assert (result.inserted, result.duplicates) == (1, 1)
    assert UsageEvent.objects.get(request_id=record.request_id).cost_micros == 4321


@pytest.mark.django_db
def test_entries_committed_by_a_consumer_that_died_before_acking_are_not_charged_twice(tenant, keys):
    records = [usage(tenant, keys[0], at=timezone.now(), cost=10 + i) for i in range(12)]
    submit_all(records)
    usage_spool_drain(max_seconds=0.000001, batch_size=1)  # creates the group; one entry drained normally
    dead = spool().xreadgroup(GROUP, "dead-consumer", {spool_key(): ">"}, count=100)[0][1]
    usage_events_insert(records=[usage_from(fields) for _, fields in dead])  # committed, never acknowledged

    result = usage_spool_drain(max_seconds=5, claim_idle_ms=0)

    assert (result.reclaimed, result.inserted, result.duplicates) == (11, 0, 11)
    assert UsageEvent.objects.filter(tenant=tenant).count() == 12
    assert pending_count() == 0 and spool().xlen(spool_key()) == 0


@pytest.mark.django_db
def test_entries_a_dead_consumer_held_are_reclaimed_once_they_are_stale(tenant, keys):
    submit_all([usage(tenant, keys[0], at=timezone.now()) for _ in range(8)])
    usage_spool_drain(max_seconds=0.000001, batch_size=1)
    spool().xreadgroup(GROUP, "dead-consumer", {spool_key(): ">"}, count=100)

    too_fresh = usage_spool_drain(max_seconds=5)  # default: 60 s idle before taking over
    assert (too_fresh.read, pending_count()) == (0, 7)

    result = usage_spool_drain(max_seconds=5, claim_idle_ms=0)
    assert (result.reclaimed, result.inserted) == (7, 7)
    assert UsageEvent.objects.filter(tenant=tenant).count() == 8


def usage_from(fields):
    from billing.usage import UsageRecord

    return UsageRecord.from_dict(json.loads(fields[FIELD.encode()]))


@pytest.mark.django_db(transaction=True)
def test_unreadable_and_refused_entries_are_dead_lettered_without_blocking_the_spool(tenant, keys):
    good = [usage(tenant, keys[0], at=timezone.now(), cost=7) for _ in range(5)]
    orphan = usage(tenant, keys[0], at=timezone.now(), request_id="req_orphan")
    orphan.tenant_id = 999_999_999  # no such tenant: the database refuses it
    submit_all([*good[:2], orphan, *good[2:]])
    spool().xadd(spool_key(), {FIELD: b"{not json"})

    result = usage_spool_drain(max_seconds=5)

    assert (result.inserted, result.dead_lettered) == (5, 2)
    assert UsageEvent.objects.filter(tenant=tenant).count() == 5
    dead = [fields[b"r"] for _, fields in spool().xrange(dead_letter_key())]
    assert b"{not json" in dead
    assert [json.loads(raw)["request_id"] for raw in dead if raw != b"{not json"] == ["req_orphan"]
    assert spool().xlen(spool_key()) == 0 and pending_count() == 0


@pytest.mark.django_db(transaction=True)
def test_with_redis_down_usage_goes_straight_to_the_ledger(tenant, keys, settings):
    records = [usage(tenant, keys[i % 3], at=timezone.now() - timedelta(minutes=i), cost=500 + i) for i in range(25)]
    real_url = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    sredis.reset_clients()
    try:
        submit_all(records)
    finally:
        settings.REDIS_URL = real_url
        sredis.reset_clients()

    events = UsageEvent.objects.filter(tenant=tenant)
    assert events.count() == 25
    assert events.aggregate(s=Sum("cost_micros"))["s"] == sum(r.cost_micros for r in records)
    assert RequestLog.objects.filter(tenant=tenant).count() == 25


@pytest.mark.django_db
def test_the_lag_gauge_counts_what_is_still_waiting(tenant, keys):
    submit_all([usage(tenant, keys[0], at=timezone.now()) for _ in range(20)])

    result = usage_spool_drain(max_seconds=0.000001, batch_size=5)  # one batch, then out of time

    assert (result.inserted, result.remaining) == (5, 15)
    assert REGISTRY.get_sample_value("sentinel_usage_spool_lag") == 15
