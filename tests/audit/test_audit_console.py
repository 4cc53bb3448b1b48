from __future__ import annotations

import csv
import io
import json

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import record, request_log_insert
from billing.usage import UsageRecord
from tenants.models import Role

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous iterators"),
]


def url(name: str, tenant, *args) -> str:
    return reverse(f"audit:{name}", args=[tenant.slug, *args])


def body(response) -> str:
    return b"".join(response).decode() if response.streaming else response.content.decode()


def usage(tenant, request_id: str, **fields) -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        tenant_id=tenant.pk,
        api_key_id=None,
        model="gpt-test",
        created_at=timezone.now(),
        **fields,
    )


# --------------------------------------------------------------------------- access
@pytest.mark.parametrize("name", ["events", "requests"])
@pytest.mark.parametrize(
    ("role", "status"), [(Role.OWNER, 200), (Role.ADMIN, 200), (Role.FINANCE, 200), (Role.VIEWER, 403)]
)
def test_audit_pages_are_for_owners_admins_and_finance(client, tenant, member, name, role, status):
    client.force_login(member(tenant, role).user)
    assert client.get(url(name, tenant)).status_code == status


@pytest.mark.parametrize("name", ["events", "requests"])
def test_non_members_get_404(client, tenant, other_tenant, member, name):
    client.force_login(member(other_tenant, Role.OWNER).user)
    assert client.get(url(name, tenant)).status_code == 404


def test_viewer_cannot_export(client, tenant, member):
    client.force_login(member(tenant, Role.VIEWER).user)
    assert client.post(url("events_export", tenant), {"format": "csv"}).status_code == 403
    assert not AuditEvent.objects.filter(tenant=tenant, action="export.downloaded").exists()


# --------------------------------------------------------------------------- search page
def test_events_page_shows_only_this_tenants_events(console, tenant, other_tenant):
    record(tenant=tenant, action="api_key.created", target_type="tenants.apikey", target_label="our-key")
    record(tenant=other_tenant, action="api_key.created", target_type="tenants.apikey", target_label="their-key")
    page = console.get(url("events", tenant))
    assert page.status_code == 200
    html = page.content.decode()
    assert "our-key" in html
    assert "their-key" not in html
    assert page["Cache-Control"] == "no-store"


def test_filter_form_filters_live_as_you_type(console, tenant):
    html = console.get(url("events", tenant)).content.decode()
    assert 'hx-trigger="input changed delay:300ms, submit"' in html
    assert 'hx-target="#audit-results"' in html
    assert f'hx-get="{url("events", tenant)}"' in html


def test_htmx_search_returns_the_results_partial(console, tenant):
    record(tenant=tenant, action="auth.failed", target_label="k1", metadata={"reason": "invalid_api_key"})
    record(tenant=tenant, action="api_key.created", target_label="k2", metadata={"reason": "new"})
    response = console.get(url("events", tenant), {"q": "invalid"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="audit-results"')
    assert "<html" not in html
    assert "auth.failed" in html
    assert "api_key.created" not in html


def test_too_short_free_text_explains_itself(console, tenant):
    html = console.get(url("events", tenant), {"q": "ab"}, headers={"HX-Request": "true"}).content.decode()
    assert "at least 3 characters" in html


def test_invalid_cursor_is_reported_not_a_crash(console, tenant):
    html = console.get(url("events", tenant), {"cursor": "bogus"}).content.decode()
    assert "invalid cursor" in html


def test_older_link_keeps_the_filters(console, tenant):
    for i in range(55):
        record(tenant=tenant, action="api_key.updated", metadata={"i": i})
    record(tenant=tenant, action="auth.failed")
    first = console.get(url("events", tenant), {"action": "api_key.updated"}).content.decode()
    assert "action=api_key.updated&amp;cursor=6" in first
    second = console.get(
        url("events", tenant), {"action": "api_key.updated", "cursor": "6"}, headers={"HX-Request": "true"}
    ).content.decode()
    assert second.count("badge badge-info mono") == 5
    assert "auth.failed" not in second


def test_event_detail_shows_the_before_after_diff(console, tenant):
    event = record(
        tenant=tenant,
        action="budget.changed",
        before={"budget_usd": "10.00", "budget_period": "month"},
        after={"budget_usd": "25.00", "budget_period": "month"},
        metadata={"ticket": "FIN-7"},
    )
    html = console.get(url("event_detail", tenant, event.pk)).content.decode()
    assert "budget_usd" in html and "10.00" in html and "25.00" in html
    assert "changed" in html and "unchanged" in html
    assert "FIN-7" in html
    assert event.hash in html


def test_another_tenants_event_detail_is_404(console, tenant, other_tenant):
    theirs = record(tenant=other_tenant, action="api_key.created")
    assert console.get(url("event_detail", tenant, theirs.pk)).status_code == 404


# --------------------------------------------------------------------------- exports
def test_csv_export_is_streamed_formula_safe_and_audited(console, tenant, other_tenant):
    record(tenant=tenant, action="api_key.created", target_label='=HYPERLINK("http://evil.test","x")')
    record(tenant=tenant, action="api_key.updated", target_label="@SUM(A1)", metadata={"note": "+1 -2"})
    record(tenant=other_tenant, action="api_key.created", target_label="their-key")
    response = console.post(url("events_export", tenant), {"format": "csv"})
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="tenant-a-audit-events-')
    text = body(response)
    rows = list(csv.DictReader(io.StringIO(text)))
    labels = {r["action"]: r["target_label"] for r in rows}
    assert labels["api_key.created"] == '\'=HYPERLINK("http://evil.test","x")'
    assert labels["api_key.updated"] == "'@SUM(A1)"
    assert "their-key" not in text
    assert "export.downloaded" not in text  # the export holds the events as they were when asked for
    exports = AuditEvent.objects.filter(tenant=tenant, action="export.downloaded")
    assert exports.count() == 1
    assert exports.get().metadata == {"format": "csv", "filters": {}}
    assert not AuditEvent.objects.filter(tenant=other_tenant, action="export.downloaded").exists()


def test_jsonl_export_honours_the_filters(console, tenant, other_tenant):
    record(tenant=tenant, action="api_key.created", target_label="k1")
    record(tenant=tenant, action="auth.failed")
    record(tenant=other_tenant, action="api_key.created", target_label="their-key")
    response = console.post(url("events_export", tenant), {"format": "jsonl", "action": "api_key"})
    assert response["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in body(response).splitlines()]
    assert [line["action"] for line in lines] == ["api_key.created"]
    assert lines[0]["target_label"] == "k1"
    event = AuditEvent.objects.get(tenant=tenant, action="export.downloaded")
    assert event.metadata == {"format": "jsonl", "filters": {"action": "api_key"}}


def test_export_with_a_bad_format_is_refused_and_not_audited(console, tenant):
    response = console.post(url("events_export", tenant), {"format": "xlsx"})
    assert response.status_code == 400
    assert not AuditEvent.objects.filter(tenant=tenant, action="export.downloaded").exists()


def test_export_is_post_only(console, tenant):
    assert console.get(url("events_export", tenant), {"format": "csv"}).status_code == 405


# --------------------------------------------------------------------------- request log
def test_request_log_page_shows_only_this_tenant(console, tenant, other_tenant):
    request_log_insert(records=[usage(tenant, "req_ours_1"), usage(other_tenant, "req_theirs_1")])
    html = console.get(url("requests", tenant)).content.decode()
    assert "req_ours_1" in html
    assert "req_theirs_1" not in html


def test_request_log_filters_by_status_over_htmx(console, tenant):
    request_log_insert(records=[usage(tenant, "req_good"), usage(tenant, "req_bad", status="error", http_status=502)])
    response = console.get(url("requests", tenant), {"status": "error"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="request-results"')
    assert "req_bad" in html and "req_good" not in html


def test_request_detail_shows_prompt_only_when_kept(console, tenant, other_tenant):
    tenant.log_prompts = True
    tenant.save(update_fields=["log_prompts"])
    request_log_insert(records=[usage(tenant, "req_p", prompt_log="hello [EMAIL]"), usage(other_tenant, "req_x")])
    html = console.get(url("request_detail", tenant, "req_p")).content.decode()
    assert "hello [EMAIL]" in html
    assert console.get(url("request_detail", tenant, "req_x")).status_code == 404


def test_request_log_export_is_audited_and_scoped(console, tenant, other_tenant):
    request_log_insert(records=[usage(tenant, "req_ours"), usage(other_tenant, "req_theirs")])
    response = console.post(url("requests_export", tenant), {"format": "csv"})
    text = body(response)
    assert "req_ours" in text and "req_theirs" not in text
    event = AuditEvent.objects.get(tenant=tenant, action="export.downloaded")
    assert event.target_type == "audit.request_log"


# --------------------------------------------------------------------------- sign-in events
PASSWORD = "correct horse battery"  # tests.factories.UserFactory


def test_login_is_recorded_once_on_the_platform_chain(client, tenant, other_tenant, member):
    user = member(tenant, Role.ADMIN, "ann@tenant-a.test").user
    member(other_tenant, Role.VIEWER, "someone@tenant-b.test")
    response = client.post(reverse("login"), {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="login.succeeded")
    assert event.tenant_id is None
    assert (event.actor_type, event.actor_id, event.actor_label) == ("user", str(user.pk), "ann@tenant-a.test")
    assert event.metadata == {"tenants": ["tenant-a"]}
    assert event.ip == "127.0.0.1"
    assert not AuditEvent.objects.filter(tenant__isnull=False, action__startswith="login.").exists()


def test_failed_login_records_the_username_and_never_the_password(client, tenant, member):
    user = member(tenant, Role.ADMIN, "ann@tenant-a.test").user
    response = client.post(reverse("login"), {"username": user.username, "password": "wrong-password-123"})
    assert response.status_code == 200
    event = AuditEvent.objects.get(action="login.failed")
    assert event.tenant_id is None
    assert event.metadata == {"username": "ann@tenant-a.test"}
    assert (event.target_type, event.target_id) == ("auth.user", str(user.pk))
    assert "wrong-password-123" not in json.dumps([event.before, event.after, event.metadata, event.target_label])


def test_logout_is_recorded(client, tenant, member):
    user = member(tenant, Role.ADMIN).user
    client.force_login(user)
    client.post(reverse("logout"))
    event = AuditEvent.objects.get(action="logout.succeeded")
    assert (event.tenant_id, event.actor_id) == (None, str(user.pk))
