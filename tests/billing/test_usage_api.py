from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from billing.calendar import local_today
from billing.services import usage_events_insert, usage_rollup_pending
from tenants.models import ApiKey
from tests.billing.conftest import make_key, usage

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def spent(tenant, other_tenant, user):
    reader = make_key(tenant, user, "reader", scopes=[ApiKey.Scope.USAGE_READ])
    app = make_key(tenant, user, "app")
    theirs = make_key(other_tenant, user, "theirs", scopes=[ApiKey.Scope.USAGE_READ])
    now = timezone.now()
    usage_events_insert(
        records=[
            usage(tenant, reader, at=now, cost=1_000, tags={"project": "alpha"}),
            usage(tenant, app, at=now - timedelta(days=2), cost=20_000, model="claude-test", tags={"project": "beta"}),
            usage(tenant, app, at=now - timedelta(days=40), cost=300_000),
            usage(other_tenant, theirs, at=now, cost=4_000_000, model="model-of-tenant-b"),
        ]
    )
    usage_rollup_pending()
    return reader, app, theirs


def get(server, key, **params):
    return httpx.get(f"{server.url}/v1/usage", params=params, headers={"Authorization": f"Bearer {key.token}"})


def test_a_reader_key_sees_its_tenants_last_30_days_by_default(gateway, spent, tenant):
    reader, _, _ = spent

    body = get(gateway, reader).json()

    today = local_today(tenant)
    assert (body["start"], body["end"]) == ((today - timedelta(days=29)).isoformat(), today.isoformat())
    assert body["scope"] == "tenant" and body["group_by"] == "day" and len(body["data"]) == 30
    assert body["total"]["cost_micros"] == 21_000 and body["total"]["cost_usd"] == "0.021000"
    assert body["total"]["requests"] == 2


def test_a_key_without_the_usage_scope_sees_only_its_own_usage(gateway, spent, tenant):
    _, app, _ = spent

    body = get(gateway, app, group_by="key").json()

    assert body["scope"] == "key"
    assert [(row["key_id"], row["cost_micros"]) for row in body["data"]] == [(app.public_id, 20_000)]


def test_grouping_by_model_key_and_tag(gateway, spent):
    reader, _, _ = spent
    start = (timezone.now() - timedelta(days=60)).date().isoformat()

    by_model = get(gateway, reader, start=start, group_by="model").json()["data"]
    by_key = get(gateway, reader, start=start, group_by="key").json()["data"]
    by_tag = get(gateway, reader, start=start, group_by="tag", tag_key="project").json()["data"]

    assert [(r["model"], r["cost_micros"]) for r in by_model] == [("gpt-test", 301_000), ("claude-test", 20_000)]
    assert [(r["key_name"], r["cost_micros"]) for r in by_key] == [("app", 320_000), ("reader", 1_000)]
    assert [(r["tag_value"], r["cost_micros"]) for r in by_tag] == [(None, 300_000), ("beta", 20_000), ("alpha", 1_000)]


def test_another_tenants_usage_is_never_in_the_answer(gateway, spent):
    reader, _, theirs = spent

    ours = get(gateway, reader, group_by="model").text
    their = get(gateway, theirs, group_by="model").json()

    assert "model-of-tenant-b" not in ours
    assert their["total"]["cost_micros"] == 4_000_000


@pytest.mark.parametrize(
    "params",
    [
        {"start": "2026-02-30"},
        {"group_by": "colour"},
        {"start": "2026-05-02", "end": "2026-05-01"},
        {"start": "2020-01-01", "end": "2026-01-01"},
        {"group_by": "tag"},
        {"group_by": "tag", "tag_key": "bad key!"},
    ],
)
def test_bad_parameters_get_a_400_in_the_openai_error_shape(gateway, spent, params):
    reader, _, _ = spent

    response = get(gateway, reader, **params)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_without_a_key_the_answer_is_401(gateway, spent):
    assert httpx.get(f"{gateway.url}/v1/usage").status_code == 401


def test_a_csv_export_streams_through_the_asgi_server(gateway, spent, tenant, user):
    from django.conf import settings
    from django.urls import reverse

    from tests.billing.conftest import console_for

    console = console_for(tenant)  # a real session row the server process can read
    cookies = {settings.SESSION_COOKIE_NAME: console.cookies[settings.SESSION_COOKIE_NAME].value}
    url = gateway.url + reverse("billing:export_usage_csv", kwargs={"tenant_slug": tenant.slug})
    start = (timezone.now() - timedelta(days=60)).date().isoformat()

    with httpx.stream("GET", url, params={"start": start}, cookies=cookies, timeout=30) as response:
        chunks = list(response.iter_text())

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    lines = "".join(chunks).splitlines()
    assert lines[0].startswith("request_id,created_at_utc,")
    assert len(lines) == 1 + 3
    assert "model-of-tenant-b" not in "".join(lines)
