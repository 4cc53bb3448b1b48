from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.errors import InvalidCursor
from audit.models import AuditEvent
from audit.selectors import AuditFilters, audit_event_batches, audit_event_diff, audit_event_get, audit_event_search
from audit.services import record
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(db):
    return {
        "alice": UserFactory(username="alice@tenant-a.test"),
        "bob": UserFactory(username="bob@tenant-a.test"),
    }


def seed(tenant, people) -> None:
    """The same story in any tenant: who did what to which key."""
    record(
        tenant=tenant,
        action="api_key.created",
        actor=people["alice"],
        target_type="tenants.apikey",
        target_id="7",
        target_label="backend-prod",
    )
    record(
        tenant=tenant,
        action="api_key.revoked",
        actor=people["bob"],
        target_type="tenants.apikey",
        target_id="8",
        target_label="staging",
    )
    record(
        tenant=tenant,
        action="member.role_changed",
        actor=people["alice"],
        target_type="tenants.membership",
        target_id="7",
        target_label="carol@tenant-a.test",
        before={"role": "viewer"},
        after={"role": "admin"},
    )
    record(tenant=tenant, action="auth.failed", metadata={"reason": "invalid_api_key", "public_id": "abc"})
    record(tenant=tenant, action="guardrail.blocked", metadata={"detector": "injection"})


def actions(page) -> list[str]:
    return [e.action for e in page.items]


def test_search_returns_only_the_tenants_events_newest_first(tenant, other_tenant, people):
    seed(tenant, people)
    seed(other_tenant, people)
    page = audit_event_search(tenant=tenant, filters=AuditFilters())
    assert {e.tenant_id for e in page.items} == {tenant.pk}
    assert [e.seq for e in page.items] == [5, 4, 3, 2, 1]
    assert not page.has_more


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"action": "api_key.revoked"}, ["api_key.revoked"]),
        ({"action": "api_key"}, ["api_key.revoked", "api_key.created"]),
        ({"action": "api_key.*"}, ["api_key.revoked", "api_key.created"]),
        ({"actor": "alice"}, ["member.role_changed", "api_key.created"]),
        ({"actor": "BOB@tenant"}, ["api_key.revoked"]),
        ({"target": "tenants.apikey:7"}, ["api_key.created"]),
        ({"target": "tenants.apikey:"}, ["api_key.revoked", "api_key.created"]),
        ({"target": "7"}, ["member.role_changed", "api_key.created"]),
        ({"target": "backend"}, ["api_key.created"]),
        ({"q": "invalid_api"}, ["auth.failed"]),
        ({"q": "INJECTION"}, ["guardrail.blocked"]),
        ({"q": "no such text"}, []),
        ({"action": "api_key", "actor": "alice"}, ["api_key.created"]),
    ],
)
def test_filters(tenant, other_tenant, people, filters, expected):
    seed(other_tenant, people)
    seed(tenant, people)
    page = audit_event_search(tenant=tenant, filters=AuditFilters(**filters))
    assert actions(page) == expected
    assert {e.tenant_id for e in page.items} <= {tenant.pk}


def test_actor_id_filter_matches_exactly(tenant, people):
    seed(tenant, people)
    page = audit_event_search(tenant=tenant, filters=AuditFilters(actor=str(people["bob"].pk)))
    assert actions(page) == ["api_key.revoked"]


def test_date_range_is_since_inclusive_until_exclusive(tenant, monkeypatch):
    real_now = timezone.now
    base = real_now() - timedelta(days=3)
    for day in range(3):
        moment = base + timedelta(days=day)
        monkeypatch.setattr(timezone, "now", lambda moment=moment: moment)
        record(tenant=tenant, action="api_key.updated", metadata={"day": day})
    monkeypatch.setattr(timezone, "now", real_now)

    def days(**kwargs) -> list[int]:
        return [e.metadata["day"] for e in audit_event_search(tenant=tenant, filters=AuditFilters(**kwargs)).items]

    assert days(since=base + timedelta(days=1)) == [2, 1]
    assert days(until=base + timedelta(days=1)) == [0]
    assert days(since=base, until=base + timedelta(days=2)) == [1, 0]
    assert days(since=base + timedelta(days=10)) == []
    assert days(until=base - timedelta(days=1)) == []


def test_keyset_pages_cover_every_event_once(tenant):
    for i in range(7):
        record(tenant=tenant, action="api_key.updated", metadata={"i": i})
    seen, cursor, pages = [], None, 0
    while True:
        page = audit_event_search(tenant=tenant, filters=AuditFilters(), cursor=cursor, limit=3)
        seen += [e.seq for e in page.items]
        pages += 1
        if not page.has_more:
            break
        cursor = page.next_cursor
    assert seen == [7, 6, 5, 4, 3, 2, 1]
    assert pages == 3


def test_filtered_pages_keep_the_filter(tenant):
    for i in range(6):
        record(tenant=tenant, action="api_key.updated" if i % 2 else "auth.failed", metadata={"i": i})
    first = audit_event_search(tenant=tenant, filters=AuditFilters(action="auth.failed"), limit=2)
    second = audit_event_search(
        tenant=tenant, filters=AuditFilters(action="auth.failed"), cursor=first.next_cursor, limit=2
    )
    assert [e.metadata["i"] for e in first.items + second.items] == [4, 2, 0]
    assert not second.has_more


@pytest.mark.parametrize("cursor", ["12x", "-1", "\u00b9", "1" * 30, "1_2"])
def test_a_cursor_we_did_not_issue_is_rejected(tenant, cursor):
    with pytest.raises(InvalidCursor):
        audit_event_search(tenant=tenant, filters=AuditFilters(), cursor=cursor)


def test_get_of_another_tenants_event_does_not_exist(tenant, other_tenant):
    theirs = record(tenant=other_tenant, action="api_key.created")
    mine = record(tenant=tenant, action="api_key.created")
    assert audit_event_get(tenant=tenant, event_id=mine.pk) == mine
    with pytest.raises(AuditEvent.DoesNotExist):
        audit_event_get(tenant=tenant, event_id=theirs.pk)


def test_diff_lists_changed_added_removed_and_unchanged_fields(tenant):
    event = record(
        tenant=tenant,
        action="api_key.updated",
        before={"rpm": 10, "name": "ci", "tpm": 5},
        after={"rpm": 20, "name": "ci", "allowed_models": ["gpt-test"]},
    )
    event.refresh_from_db()
    rows = {(r.field, r.before, r.after, r.kind) for r in audit_event_diff(event)}
    assert rows == {
        ("rpm", "10", "20", "changed"),
        ("name", "ci", "ci", "same"),
        ("tpm", "5", "", "removed"),
        ("allowed_models", "", '["gpt-test"]', "added"),
    }


def test_export_batches_are_every_match_newest_first(tenant, other_tenant):
    for i in range(5):
        record(tenant=tenant, action="api_key.updated", metadata={"i": i})
        record(tenant=other_tenant, action="api_key.updated", metadata={"i": i})
    batches = list(audit_event_batches(tenant=tenant, filters=AuditFilters(), batch_size=2))
    assert [[e.seq for e in b] for b in batches] == [[5, 4], [3, 2], [1]]
    assert {e.tenant_id for b in batches for e in b} == {tenant.pk}
