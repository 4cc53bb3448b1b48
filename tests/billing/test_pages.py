import csv
import io
from datetime import timedelta

import pytest
from django.db.models import Sum
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from billing.calendar import local_today
from billing.models import BudgetAlert, UsageEvent
from billing.services import usage_events_insert, usage_rollup_pending
from tenants.models import Role
from tests.billing.conftest import console_for, make_key, usage

pytestmark = pytest.mark.django_db


@pytest.fixture
def ledger(tenant, other_tenant, keys, other_keys):
    now = timezone.now().replace(hour=12)
    ours = [
        usage(tenant, keys[i % 3], at=now - timedelta(days=i % 5), cost=1_000 + i, tags={"project": "alpha"})
        for i in range(40)
    ]
    ours.append(usage(tenant, keys[2], at=now, cost=5, request_id="-1+2+cmd-ours", tags={"project": "+SUM(1)"}))
    theirs = [
        usage(
            other_tenant,
            other_keys[i % 2],
            at=now - timedelta(days=i % 5),
            model="model-of-tenant-b",
            cost=77_000,
            request_id=f"req_b_{i:04d}",
            tags={"project": "secret-b"},
        )
        for i in range(20)
    ]
    usage_events_insert(records=ours + theirs)
    usage_rollup_pending()
    BudgetAlert.objects.create(
        tenant=other_tenant,
        scope="key",
        api_key=other_keys[0],
        period="month",
        period_start=now.date().replace(day=1),
        threshold=80,
        budget_micros=1,
        spent_micros=1,
    )
    return ours


def page_urls(tenant, key, day):
    slug = tenant.slug
    return [
        reverse("billing:costs", kwargs={"tenant_slug": slug}),
        reverse("billing:costs", kwargs={"tenant_slug": slug}) + "?group=key",
        reverse("billing:costs", kwargs={"tenant_slug": slug}) + "?group=tag&tag=project",
        reverse("billing:costs", kwargs={"tenant_slug": slug}) + "?group=day",
        reverse("billing:costs_day", kwargs={"tenant_slug": slug, "day": day}),
        reverse("billing:costs_key", kwargs={"tenant_slug": slug, "key_id": key.pk}),
        reverse("billing:export_usage_csv", kwargs={"tenant_slug": slug}),
        reverse("billing:export_rollup_csv", kwargs={"tenant_slug": slug}),
        reverse("billing:statements", kwargs={"tenant_slug": slug}),
        reverse("billing:statement", kwargs={"tenant_slug": slug, "year": day.year, "month": day.month}),
        reverse("billing:alerts", kwargs={"tenant_slug": slug}),
    ]


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.parametrize("role", [Role.FINANCE, Role.ADMIN, Role.OWNER])
def test_cost_roles_see_every_page_and_nothing_of_another_tenant(role, tenant, keys, ledger):
    client = console_for(tenant, role)
    for url in page_urls(tenant, keys[0], local_today(tenant)):
        response = client.get(url)
        assert response.status_code == 200, url
        content = body(response)
        for marker in (b"theirs-", b"model-of-tenant-b", b"secret-b", b"req_b_", b"Tenant B"):
            assert marker not in content, (url, marker)


def test_viewers_are_refused_and_strangers_see_no_such_tenant(tenant, keys, ledger):
    viewer = console_for(tenant, Role.VIEWER)
    stranger = Client()
    stranger.force_login(console_for(tenant.__class__.objects.create(slug="elsewhere", name="Elsewhere")).user)
    for url in page_urls(tenant, keys[0], local_today(tenant)):
        assert viewer.get(url).status_code == 403, url
        assert stranger.get(url).status_code == 404, url
        assert Client().get(url).status_code == 302, url


def test_another_tenants_key_ids_are_not_found(tenant, console, other_keys, ledger):
    slug = tenant.slug
    theirs = other_keys[0].pk
    today = local_today(tenant).isoformat()
    for url in [
        reverse("billing:costs_key", kwargs={"tenant_slug": slug, "key_id": theirs}),
        reverse("billing:costs_day", kwargs={"tenant_slug": slug, "day": today}) + f"?key={theirs}",
        reverse("billing:export_usage_csv", kwargs={"tenant_slug": slug}) + f"?key={theirs}",
        reverse("billing:export_rollup_csv", kwargs={"tenant_slug": slug}) + f"?key={theirs}",
    ]:
        assert console.get(url).status_code == 404, url


def test_page_totals_match_the_ledger(tenant, console, ledger):
    start = (local_today(tenant) - timedelta(days=10)).isoformat()
    response = console.get(reverse("billing:costs", kwargs={"tenant_slug": tenant.slug}) + f"?start={start}")

    expected = UsageEvent.objects.filter(tenant=tenant).aggregate(s=Sum("cost_micros"))["s"]
    assert response.context["overview"].totals.cost_micros == expected
    assert response.context["totals"].cost_micros == expected
    assert f'data-micros="{expected}"'.encode() in response.content


def test_htmx_gets_only_the_cost_table(tenant, console, ledger):
    url = reverse("billing:costs", kwargs={"tenant_slug": tenant.slug}) + "?group=key"

    response = console.get(url, headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert response.content.lstrip().startswith(b'<section class="card" id="cost-table">')
    assert b"<html" not in response.content
    assert "HX-Request" in response["Vary"]


def test_the_key_table_pages_by_keyset_without_overlap(tenant, user, console):
    keys = [make_key(tenant, user, f"key-{i:02d}") for i in range(30)]
    now = timezone.now()
    usage_events_insert(records=[usage(tenant, k, at=now, cost=1000 * (i % 7) + i) for i, k in enumerate(keys)])
    usage_rollup_pending()
    url = reverse("billing:costs", kwargs={"tenant_slug": tenant.slug})

    first = console.get(url, {"group": "key"}, headers={"HX-Request": "true"}).context["table"]
    second = console.get(url, {"group": "key", "cursor": first.next_cursor}, headers={"HX-Request": "true"}).context[
        "table"
    ]

    assert (len(first.rows), len(second.rows), second.next_cursor) == (25, 5, None)
    names = [r.label for r in first.rows + second.rows]
    assert sorted(names) == sorted(k.name for k in keys)
    costs = [r.totals.cost_micros for r in first.rows + second.rows]
    assert costs == sorted(costs, reverse=True)


def read_csv(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(body(response).decode())))


def test_csv_exports_are_exact_audited_and_safe_to_open_in_a_spreadsheet(tenant, console, keys, ledger):
    start = (local_today(tenant) - timedelta(days=10)).isoformat()
    query = f"?start={start}"
    requests = read_csv(console.get(reverse("billing:export_usage_csv", kwargs={"tenant_slug": tenant.slug}) + query))
    daily = read_csv(console.get(reverse("billing:export_rollup_csv", kwargs={"tenant_slug": tenant.slug}) + query))

    expected = UsageEvent.objects.filter(tenant=tenant).aggregate(s=Sum("cost_micros"))["s"]
    assert sum(int(r["cost_micros"]) for r in requests) == expected
    assert sum(int(r["cost_micros"]) for r in daily) == expected
    assert len(requests) == len(ledger)
    risky = next(r for r in requests if r["request_id"].endswith("cmd-ours"))
    assert risky["request_id"] == "'-1+2+cmd-ours"
    assert risky["key_name"] == "'=cmd|' /C calc'!A0"
    assert {r["key_name"] for r in daily} >= {"backend", "'=cmd|' /C calc'!A0"}
    exports = AuditEvent.objects.filter(tenant=tenant, action="export.downloaded")
    assert sorted(exports.values_list("target_type", flat=True)) == ["billing.daily_usage", "billing.usage_event"]
    assert exports.first().actor_id == str(console.user.pk)


def test_a_key_export_holds_only_that_keys_requests(tenant, console, keys, ledger):
    url = reverse("billing:export_usage_csv", kwargs={"tenant_slug": tenant.slug})

    rows = read_csv(
        console.get(url, {"start": (local_today(tenant) - timedelta(days=9)).isoformat(), "key": keys[1].pk})
    )

    assert rows and {r["key_id"] for r in rows} == {keys[1].public_id}
    assert len(rows) == UsageEvent.objects.filter(tenant=tenant, api_key=keys[1]).count()


def test_the_day_drill_down_lists_that_days_requests_newest_first(tenant, console, keys, ledger):
    day = local_today(tenant)
    url = reverse("billing:costs_day", kwargs={"tenant_slug": tenant.slug, "day": day})

    response = console.get(url)

    events = response.context["page"].events
    expected = UsageEvent.objects.filter(tenant=tenant, created_at__date=day)
    assert {e.request_id for e in events} == set(expected.values_list("request_id", flat=True))
    assert [e.created_at for e in events] == sorted((e.created_at for e in events), reverse=True)
    assert response.context["totals"].cost_micros == expected.aggregate(s=Sum("cost_micros"))["s"]


def test_a_malformed_range_falls_back_to_the_last_30_days_with_a_message(tenant, console, ledger):
    url = reverse("billing:costs", kwargs={"tenant_slug": tenant.slug})

    response = console.get(url, {"start": "2026-02-30", "end": "nonsense"})

    assert response.status_code == 200
    assert response.context["end"] == local_today(tenant)
    assert b"Showing the last 30 days instead" in response.content


def test_the_statement_view_is_audited(tenant, console, ledger):
    today = local_today(tenant)
    url = reverse("billing:statement", kwargs={"tenant_slug": tenant.slug, "year": today.year, "month": today.month})

    console.get(url)

    event = AuditEvent.objects.get(tenant=tenant, action="export.downloaded", target_type="billing.statement")
    assert event.metadata["filters"] == {"month": f"{today:%Y-%m}"}


def test_unknown_months_and_days_are_not_found(tenant, console):
    slug = tenant.slug
    assert console.get(f"/t/{slug}/costs/statements/2026-13/").status_code == 404
    assert console.get(f"/t/{slug}/costs/day/2026-02-30/").status_code == 404


def test_an_export_with_a_reversed_range_is_a_bad_request(tenant, console):
    url = reverse("billing:export_usage_csv", kwargs={"tenant_slug": tenant.slug})

    response = console.get(url, {"start": "2026-05-02", "end": "2026-05-01"})

    assert response.status_code == 400
    assert b"start date must be on or before the end date" in response.content
    assert not AuditEvent.objects.filter(tenant=tenant, action="export.downloaded").exists()


@pytest.mark.parametrize(
    "cursor",
    ["not-base64!", "WyJ4IiwieSJd", "WzEsMl0", "WyIyMDI2LTEzLTAxIl0", "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwxXQ"],
)
def test_a_tampered_cursor_shows_the_first_page(tenant, console, ledger, cursor):
    slug = tenant.slug
    day = local_today(tenant)
    for url in [
        reverse("billing:costs", kwargs={"tenant_slug": slug}) + f"?group=key&cursor={cursor}",
        reverse("billing:costs", kwargs={"tenant_slug": slug}) + f"?group=day&cursor={cursor}",
        reverse("billing:costs", kwargs={"tenant_slug": slug}) + f"?group=tag&tag=project&cursor={cursor}",
        reverse("billing:costs_day", kwargs={"tenant_slug": slug, "day": day}) + f"?cursor={cursor}",
        reverse("billing:alerts", kwargs={"tenant_slug": slug}) + f"?cursor={cursor}",
    ]:
        assert console.get(url, headers={"HX-Request": "true"}).status_code == 200, url
