from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from audit.services import GENESIS, RETENTION_ACTION, RequestMeta, audit_retention_apply, compute_hash, record
from tests.conftest import ROOT, server_env


def add_events(tenant, count: int, **kwargs) -> list[AuditEvent]:
    return [
        record(
            tenant=tenant,
            action="api_key.updated",
            metadata={"i": i},
            before={"rpm": i},
            after={"rpm": i + 1},
            **kwargs,
        )
        for i in range(count)
    ]


def verify(*args: str) -> str:
    out = StringIO()
    call_command("verify_audit_chain", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def as_dba(*statements: tuple[str, list]) -> None:
    """Raw SQL with the append-only trigger off, as a DBA with direct access could run it."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        for sql, params in statements:
            cursor.execute(sql, params)
        cursor.execute("SET LOCAL session_replication_role = origin")


def row(tenant, seq: int) -> AuditEvent:
    return AuditEvent.objects.get(tenant=tenant, seq=seq)


# --------------------------------------------------------------------------- the chain
@pytest.mark.django_db
def test_each_event_links_to_the_previous_one(tenant, chain_of):
    add_events(tenant, 3)
    events = chain_of(tenant)
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[0].prev_hash == GENESIS
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:2]]
    assert all(compute_hash(e) == e.hash for e in events)


@pytest.mark.django_db
def test_chains_are_per_tenant(tenant, other_tenant, chain_of):
    add_events(tenant, 2)
    add_events(other_tenant, 3)
    add_events(None, 1)
    assert [e.seq for e in chain_of(tenant)] == [1, 2]
    assert [e.seq for e in chain_of(other_tenant)] == [1, 2, 3]
    assert [e.seq for e in chain_of(None)] == [1]


@pytest.mark.django_db
def test_secret_fields_are_redacted_before_hashing(tenant):
    event = record(
        tenant=tenant,
        action="api_key.rotated",
        before={"secret_hash": "abc123", "name": "ci"},
        after={"secret_hash": "def456", "name": "ci"},
    )
    event.refresh_from_db()
    assert event.before == {"secret_hash": "[redacted]", "name": "ci"}
    assert event.after["secret_hash"] == "[redacted]"
    assert compute_hash(event) == event.hash


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("given", "stored"),
    [("2001:DB8:0:0:0:0:0:1", "2001:db8::1"), ("::ffff:10.0.0.1", "::ffff:10.0.0.1"), ("not-an-ip", None)],
)
def test_client_address_is_stored_as_hashed(tenant, given, stored):
    event = record(tenant=tenant, action="auth.failed", meta=RequestMeta(ip=given))
    event.refresh_from_db()
    assert event.ip == stored
    assert audit_chain_verify(tenant=tenant).count == 1


@pytest.mark.django_db
def test_created_at_never_goes_back_along_a_chain(tenant, monkeypatch):
    first = record(tenant=tenant, action="api_key.updated")
    earlier = first.created_at - timedelta(minutes=5)  # another host with a slow clock
    monkeypatch.setattr(timezone, "now", lambda: earlier)
    second = record(tenant=tenant, action="api_key.updated")
    assert second.created_at == first.created_at
    assert audit_chain_verify(tenant=tenant).count == 2


# --------------------------------------------------------------------------- verification command
@pytest.mark.django_db
def test_verify_reports_counts_on_success(tenant, other_tenant):
    add_events(tenant, 4)
    add_events(other_tenant, 2)
    add_events(None, 1)
    assert verify() == "audit chains OK: 3 chains, 7 events verified\n"
    assert verify("--tenant", "tenant-a") == "audit chains OK: 1 chain, 4 events verified\n"


@pytest.mark.django_db
def test_verify_of_an_unknown_tenant_is_an_operator_error():
    with pytest.raises(CommandError, match="no tenant with slug 'nope'"):
        verify("--tenant", "nope")


@pytest.mark.django_db
def test_edited_row_is_detected(tenant, other_tenant):
    add_events(tenant, 6)
    add_events(other_tenant, 3)
    as_dba(("UPDATE audit_auditevent SET metadata = %s WHERE tenant_id = %s AND seq = 3", ['{"i": 99}', tenant.pk]))
    with pytest.raises(CommandError, match=r"^audit chain broken: tenant-a: chain broken at seq 3: content does not"):
        verify("--tenant", "tenant-a")
    assert verify("--tenant", "tenant-b") == "audit chains OK: 1 chain, 3 events verified\n"


@pytest.mark.django_db
def test_edited_and_rehashed_row_breaks_the_next_link(tenant):
    add_events(tenant, 6)
    forged = row(tenant, 3)
    forged.actor_label = "someone else"
    new_hash = compute_hash(forged)
    as_dba(
        (
            "UPDATE audit_auditevent SET actor_label = %s, hash = %s WHERE tenant_id = %s AND seq = 3",
            ["someone else", new_hash, tenant.pk],
        )
    )
    with pytest.raises(CommandError, match=r"seq 4: does not link to the previous row's hash"):
        verify("--tenant", "tenant-a")


@pytest.mark.django_db
def test_deleted_row_is_detected(tenant):
    add_events(tenant, 6)
    as_dba(("DELETE FROM audit_auditevent WHERE tenant_id = %s AND seq = 3", [tenant.pk]))
    with pytest.raises(CommandError, match=r"chain broken at seq 3: seq 3 missing \(row deleted\)"):
        verify("--tenant", "tenant-a")


@pytest.mark.django_db
def test_deleted_first_rows_are_detected(tenant):
    add_events(tenant, 4)
    as_dba(("DELETE FROM audit_auditevent WHERE tenant_id = %s AND seq <= 2", [tenant.pk]))
    with pytest.raises(CommandError, match=r"chain broken at seq 1: seq 1..2 missing"):
        verify("--tenant", "tenant-a")


INSERT_FORGED = """
    INSERT INTO audit_auditevent (tenant_id, seq, created_at, actor_type, actor_id, actor_label, action,
        target_type, target_id, target_label, before, after, metadata, ip, user_agent, request_id, prev_hash, hash)
    VALUES (%s, %s, now(), 'user', '1', 'mallory', 'api_key.created', '', '', '', NULL, NULL, '{}', NULL, '', '',
        %s, %s)
"""


@pytest.mark.django_db
def test_forged_row_appended_with_a_made_up_hash_is_detected(tenant):
    add_events(tenant, 6)
    last = row(tenant, 6)
    made_up = hashlib.sha256(b"mallory was here").hexdigest()
    as_dba((INSERT_FORGED, [tenant.pk, 7, last.hash, made_up]))
    with pytest.raises(CommandError, match=r"chain broken at seq 7: content does not match its hash"):
        verify("--tenant", "tenant-a")


@pytest.mark.django_db
def test_forged_row_inserted_mid_chain_is_detected(tenant):
    add_events(tenant, 6)
    third = row(tenant, 3)
    # Make room at seq 4, then insert a row whose own hash is computed correctly over its content.
    forged = AuditEvent(
        tenant=tenant,
        seq=4,
        created_at=third.created_at,
        actor_type="user",
        actor_id="1",
        actor_label="mallory",
        action="api_key.created",
        metadata={},
        prev_hash=third.hash,
    )
    forged.hash = compute_hash(forged)
    as_dba(
        ("UPDATE audit_auditevent SET seq = seq + 1000 WHERE tenant_id = %s AND seq >= 4", [tenant.pk]),
        ("UPDATE audit_auditevent SET seq = seq - 999 WHERE tenant_id = %s AND seq >= 1000", [tenant.pk]),
    )
    forged.save(force_insert=True)
    with pytest.raises(CommandError, match=r"chain broken at seq 5: does not link"):
        verify("--tenant", "tenant-a")


@pytest.mark.django_db
def test_swapped_rows_are_detected(tenant):
    add_events(tenant, 6)
    as_dba(
        ("UPDATE audit_auditevent SET seq = 1000000 WHERE tenant_id = %s AND seq = 2", [tenant.pk]),
        ("UPDATE audit_auditevent SET seq = 2 WHERE tenant_id = %s AND seq = 4", [tenant.pk]),
        ("UPDATE audit_auditevent SET seq = 4 WHERE tenant_id = %s AND seq = 1000000", [tenant.pk]),
    )
    with pytest.raises(CommandError, match=r"chain broken at seq 2: does not link"):
        verify("--tenant", "tenant-a")


@pytest.mark.django_db
def test_verifying_all_chains_names_the_broken_one(tenant, other_tenant):
    add_events(tenant, 3)
    add_events(other_tenant, 3)
    as_dba(("DELETE FROM audit_auditevent WHERE tenant_id = %s AND seq = 2", [other_tenant.pk]))
    with pytest.raises(CommandError, match=r"^audit chain broken: tenant-b: chain broken at seq 2"):
        verify()


@pytest.mark.django_db(transaction=True)
def test_verify_command_exits_non_zero_with_one_line(tenant):
    add_events(tenant, 3)
    # Transactional DDL: the trigger is off only inside this transaction, as a DBA's session would do it.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        cursor.execute("UPDATE audit_auditevent SET action = 'x' WHERE tenant_id = %s AND seq = 2", [tenant.pk])
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")
    done = subprocess.run(
        [sys.executable, "manage.py", "verify_audit_chain", "--tenant", tenant.slug],
        cwd=ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "CommandError: audit chain broken: tenant-a: chain broken at seq 2: content does not match its hash "
        "(row edited)"
    ]


# --------------------------------------------------------------------------- append-only trigger
@pytest.mark.django_db
def test_update_is_refused_by_the_database(tenant):
    event = add_events(tenant, 1)[0]
    with pytest.raises(DatabaseError, match="append-only: UPDATE refused"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="api_key.created")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE audit_auditevent SET metadata = '{}' WHERE id = %s", [event.pk])


@pytest.mark.django_db
def test_delete_is_refused_outside_retention(tenant):
    event = add_events(tenant, 1)[0]
    with pytest.raises(DatabaseError, match="append-only: DELETE refused"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


# --------------------------------------------------------------------------- concurrency
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_for_one_tenant_keep_the_chain_valid(tenant):
    writers, per_writer = 8, 15
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            start.wait()
            for i in range(per_writer):
                with transaction.atomic():
                    record(tenant=tenant, action="api_key.updated", metadata={"writer": n, "i": i})
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    total = writers * per_writer
    seqs = list(AuditEvent.objects.filter(tenant=tenant).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, total + 1))
    report = audit_chain_verify(tenant=tenant)
    assert (report.count, report.first_seq, report.last_seq) == (total, 1, total)


# --------------------------------------------------------------------------- retention
def add_old_and_new(tenant, monkeypatch, *, old: int, new: int, days_ago: int = 400) -> None:
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() - timedelta(days=days_ago))
    add_events(tenant, old)
    monkeypatch.setattr(timezone, "now", real_now)
    add_events(tenant, new)


@pytest.mark.django_db
def test_retention_removes_the_old_segment_and_anchors_the_chain(tenant, monkeypatch, chain_of):
    add_old_and_new(tenant, monkeypatch, old=5, new=3)
    last_removed = row(tenant, 5)
    result = audit_retention_apply(tenant=tenant, retention_days=365)
    assert (result.removed_from_seq, result.removed_to_seq, result.removed_count) == (1, 5, 5)
    events = chain_of(tenant)
    assert [e.seq for e in events] == [6, 7, 8, 9]
    anchor = events[-1]
    assert anchor.action == RETENTION_ACTION
    assert anchor.metadata["anchor_hash"] == last_removed.hash
    assert (anchor.metadata["removed_from_seq"], anchor.metadata["removed_to_seq"]) == (1, 5)
    assert events[0].prev_hash == last_removed.hash
    assert verify("--tenant", "tenant-a") == (
        "audit chains OK: 1 chain, 4 events verified, 1 starting at a retention anchor\n"
    )


@pytest.mark.django_db
def test_retention_twice_changes_nothing_the_second_time(tenant, monkeypatch, chain_of):
    add_old_and_new(tenant, monkeypatch, old=2, new=1)
    assert audit_retention_apply(tenant=tenant, retention_days=365) is not None
    before = [e.hash for e in chain_of(tenant)]
    assert audit_retention_apply(tenant=tenant, retention_days=365) is None
    assert [e.hash for e in chain_of(tenant)] == before


@pytest.mark.django_db
def test_retention_can_remove_every_row_and_still_verify(tenant, monkeypatch, chain_of):
    add_old_and_new(tenant, monkeypatch, old=3, new=0)
    audit_retention_apply(tenant=tenant, retention_days=365)
    assert [(e.seq, e.action) for e in chain_of(tenant)] == [(4, RETENTION_ACTION)]
    assert audit_chain_verify(tenant=tenant).count == 1
    add_events(tenant, 2)
    assert audit_chain_verify(tenant=tenant).count == 3


@pytest.mark.django_db
def test_a_second_retention_moves_the_anchor(tenant, monkeypatch):
    add_old_and_new(tenant, monkeypatch, old=2, new=0, days_ago=500)
    audit_retention_apply(tenant=tenant, retention_days=450)
    add_old_and_new(tenant, monkeypatch, old=0, new=2)
    audit_retention_apply(tenant=tenant, retention_days=0)
    report = audit_chain_verify(tenant=tenant)
    assert report.anchored and report.count == 1


@pytest.mark.django_db
def test_deleting_rows_after_the_anchor_is_detected(tenant, monkeypatch):
    add_old_and_new(tenant, monkeypatch, old=3, new=3)
    audit_retention_apply(tenant=tenant, retention_days=365)
    as_dba(("DELETE FROM audit_auditevent WHERE tenant_id = %s AND seq = 4", [tenant.pk]))
    with pytest.raises(CommandError, match=r"chain broken at seq 4: seq 4 missing"):
        verify("--tenant", "tenant-a")


@pytest.mark.django_db
def test_editing_the_anchor_is_detected(tenant, monkeypatch):
    add_old_and_new(tenant, monkeypatch, old=3, new=1)
    result = audit_retention_apply(tenant=tenant, retention_days=365)
    as_dba(
        (
            "UPDATE audit_auditevent SET metadata = jsonb_set(metadata, '{removed_to_seq}', '2') WHERE id = %s",
            [result.anchor_event.pk],
        )
    )
    with pytest.raises(CommandError, match=r"seq 5: the retention anchor's content does not match its hash"):
        verify("--tenant", "tenant-a")


@pytest.mark.django_db
def test_platform_chain_retention_is_separate(tenant, monkeypatch, chain_of):
    add_old_and_new(None, monkeypatch, old=2, new=1)
    add_old_and_new(tenant, monkeypatch, old=2, new=0)
    audit_retention_apply(tenant=None, retention_days=365)
    assert [e.seq for e in chain_of(None)] == [3, 4]
    assert [e.seq for e in chain_of(tenant)] == [1, 2]
    assert verify() == "audit chains OK: 2 chains, 4 events verified, 1 starting at a retention anchor\n"


@pytest.mark.django_db
def test_retention_task_uses_each_tenants_setting(tenant, other_tenant, monkeypatch, settings, chain_of):
    from audit.tasks import apply_audit_retention

    tenant.audit_retention_days = 365
    tenant.save(update_fields=["audit_retention_days"])
    other_tenant.audit_retention_days = 1000
    other_tenant.save(update_fields=["audit_retention_days"])
    settings.SENTINEL_PLATFORM_AUDIT_RETENTION_DAYS = 30
    add_old_and_new(tenant, monkeypatch, old=2, new=1)
    add_old_and_new(other_tenant, monkeypatch, old=2, new=1)
    add_old_and_new(None, monkeypatch, old=1, new=0)
    assert apply_audit_retention.delay().get() == 3
    assert [e.seq for e in chain_of(tenant)] == [3, 4]
    assert [e.seq for e in chain_of(other_tenant)] == [1, 2, 3]
    assert [e.seq for e in chain_of(None)] == [2]
    assert apply_audit_retention.delay().get() == 0
    assert verify() == "audit chains OK: 3 chains, 6 events verified, 2 starting at a retention anchor\n"
