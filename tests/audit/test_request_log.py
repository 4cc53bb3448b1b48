from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.errors import InvalidCursor
from audit.models import RequestLog
from audit.selectors import RequestLogFilters, request_log_batches, request_log_get, request_log_search
from audit.services import request_log_insert, request_log_purge
from audit.tasks import purge_request_log
from billing.usage import UsageRecord
from tenants.services import api_key_create

pytestmark = pytest.mark.django_db


def usage(tenant, request_id: str, *, key=None, at=None, **fields) -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        tenant_id=tenant.pk,
        api_key_id=key.pk if key else None,
        model=fields.pop("model", "gpt-test"),
        created_at=at or timezone.now(),
        **fields,
    )


def test_insert_is_idempotent_and_fills_the_key_id(tenant):
    key, _ = api_key_create(tenant=tenant, name="ci")
    records = [usage(tenant, "req_1", key=key, prompt_tokens=10, cost_micros=42), usage(tenant, "req_2")]
    assert request_log_insert(records=records) == 2
    assert request_log_insert(records=records) == 2
    rows = {r.request_id: r for r in RequestLog.objects.filter(tenant=tenant)}
    assert set(rows) == {"req_1", "req_2"}
    assert (rows["req_1"].key_public_id, rows["req_1"].api_key_id) == (key.public_id, key.pk)
    assert (rows["req_1"].prompt_tokens, rows["req_1"].cost_micros) == (10, 42)
    assert rows["req_2"].key_public_id == ""


def test_insert_of_nothing_is_nothing():
    assert request_log_insert(records=[]) == 0


def test_prompt_text_is_kept_only_for_tenants_that_opted_in(tenant, other_tenant):
    other_tenant.log_prompts = True
    other_tenant.save(update_fields=["log_prompts"])
    request_log_insert(
        records=[
            usage(tenant, "req_a", prompt_log="my email is [EMAIL]"),
            usage(other_tenant, "req_b", prompt_log="my email is [EMAIL]", guardrail_flags=["pii"]),
        ]
    )
    assert RequestLog.objects.get(request_id="req_a").prompt_text == ""
    row = RequestLog.objects.get(request_id="req_b")
    assert row.prompt_text == "my email is [EMAIL]"
    assert row.guardrail_flags == ["pii"]


def test_purge_keeps_each_tenants_retention(tenant, other_tenant):
    tenant.request_log_retention_days = 7
    tenant.save(update_fields=["request_log_retention_days"])
    other_tenant.request_log_retention_days = 30
    other_tenant.save(update_fields=["request_log_retention_days"])
    now = timezone.now()
    request_log_insert(
        records=[
            usage(tenant, "a_old", at=now - timedelta(days=8)),
            usage(tenant, "a_new", at=now - timedelta(days=6)),
            usage(other_tenant, "b_mid", at=now - timedelta(days=8)),
            usage(other_tenant, "b_old", at=now - timedelta(days=31)),
        ]
    )
    assert purge_request_log.delay(tenant_id=tenant.pk).get() == 1
    assert purge_request_log.delay().get() == 1  # every tenant: b_old
    assert set(RequestLog.objects.values_list("request_id", flat=True)) == {"a_new", "b_mid"}


def test_purge_in_batches_removes_everything_old(tenant):
    now = timezone.now()
    request_log_insert(records=[usage(tenant, f"r{i}", at=now - timedelta(days=40)) for i in range(25)])
    assert request_log_purge(tenant=tenant, batch_size=10) == 25
    assert not RequestLog.objects.exists()


@pytest.fixture
def logged(tenant, other_tenant):
    key, _ = api_key_create(tenant=tenant, name="ci")
    theirs, _ = api_key_create(tenant=other_tenant, name="theirs")
    at = timezone.now()
    request_log_insert(
        records=[
            usage(tenant, "req_ok_1", key=key, at=at - timedelta(minutes=3)),
            usage(tenant, "req_err", key=key, at=at - timedelta(minutes=2), status="error", http_status=502),
            usage(tenant, "req_claude", at=at - timedelta(minutes=2), model="claude-test"),
            usage(tenant, "req_ok_2", key=key, at=at - timedelta(minutes=1)),
            usage(other_tenant, "req_theirs", key=theirs, at=at, status="error"),
        ]
    )
    return key


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        # a tie on created_at is broken by id, newest first
        ({}, ["req_ok_2", "req_claude", "req_err", "req_ok_1"]),
        ({"request_id": "req_err"}, ["req_err"]),
        ({"request_id": "req_theirs"}, []),
        ({"model": "claude-test"}, ["req_claude"]),
        ({"status": "error"}, ["req_err"]),
    ],
)
def test_request_log_filters(tenant, logged, filters, expected):
    page = request_log_search(tenant=tenant, filters=RequestLogFilters(**filters))
    assert [r.request_id for r in page.items] == expected


def test_request_log_key_filter_takes_the_id_or_the_displayed_key(tenant, logged):
    for key in (logged.public_id, logged.display):
        page = request_log_search(tenant=tenant, filters=RequestLogFilters(key=key))
        assert [r.request_id for r in page.items] == ["req_ok_2", "req_err", "req_ok_1"]


def test_request_log_pages_cover_every_row_once_with_ties(tenant):
    at = timezone.now()
    request_log_insert(records=[usage(tenant, f"r{i:02}", at=at) for i in range(7)])
    seen, cursor = [], None
    while True:
        page = request_log_search(tenant=tenant, filters=RequestLogFilters(), cursor=cursor, limit=3)
        seen += [r.request_id for r in page.items]
        if not page.has_more:
            break
        cursor = page.next_cursor
    assert sorted(seen) == [f"r{i:02}" for i in range(7)]
    assert len(seen) == 7
    batches = list(request_log_batches(tenant=tenant, filters=RequestLogFilters(), batch_size=3))
    assert [r.request_id for b in batches for r in b] == seen


@pytest.mark.parametrize("cursor", ["abc", "1_", "_1", "1-2", "9" * 30 + "_1"])
def test_request_log_rejects_foreign_cursors(tenant, cursor):
    with pytest.raises(InvalidCursor):
        request_log_search(tenant=tenant, filters=RequestLogFilters(), cursor=cursor)


def test_request_log_get_is_tenant_scoped(tenant, logged):
    assert request_log_get(tenant=tenant, request_id="req_err").status == "error"
    with pytest.raises(RequestLog.DoesNotExist):
        request_log_get(tenant=tenant, request_id="req_theirs")
