import json
import time

import httpx
import pytest
import redis
from django.test import Client
from django.urls import reverse
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from billing.services.spool import spool_key
from gateway import metrics as gateway_metrics
from sentinel_site import redis as sredis
from sentinel_site import settings as site_settings
from tests.foundation.test_settings_validation import run_check

TOKEN = "metrics-test-token-7f3a"


@pytest.fixture(autouse=True)
def lean_stack(settings):
    # /metrics is served by the API handler, with only the API middleware (sentinel_site/asgi.py).
    settings.MIDDLEWARE = settings.SENTINEL_API_MIDDLEWARE


def scrape(**headers):
    return Client().get("/metrics", **headers)


def families(response) -> dict:
    return {family.name: family for family in text_string_to_metric_families(response.content.decode())}


def test_metrics_are_open_in_development_without_a_token(settings):
    settings.SENTINEL_METRICS_TOKEN = None
    settings.SENTINEL_METRICS_ALLOW = []
    settings.PRODUCTION = False
    response = scrape()
    assert response.status_code == 200
    assert response["content-type"].startswith("text/plain")
    assert response["cache-control"] == "no-store"


def test_every_sentinel_metric_is_exposed(settings):
    settings.SENTINEL_METRICS_TOKEN = None
    settings.SENTINEL_METRICS_ALLOW = []
    text = scrape().content.decode()
    declared = [m for m in vars(gateway_metrics).values() if isinstance(m, MetricWrapperBase)]
    assert len(declared) >= 15
    for metric in declared:
        name = metric._name + ("_total" if metric._type == "counter" else "")  # text format: counters end _total
        assert f"# TYPE {name} {metric._type}" in text, f"{name} is not exposed"


@pytest.mark.parametrize(
    ("authorization", "status"),
    [(None, 401), ("Bearer wrong-token", 401), (f"Basic {TOKEN}", 401), (f"Bearer {TOKEN}", 200)],
)
def test_a_configured_token_is_required(settings, authorization, status):
    settings.SENTINEL_METRICS_TOKEN = TOKEN
    settings.SENTINEL_METRICS_ALLOW = []
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = scrape(**headers)
    assert response.status_code == status
    if status == 401:
        assert response["www-authenticate"].startswith("Bearer")
        assert b"sentinel_" not in response.content


def test_production_without_token_or_allow_list_is_closed(settings):
    settings.PRODUCTION = True
    settings.SENTINEL_METRICS_TOKEN = None
    settings.SENTINEL_METRICS_ALLOW = []
    response = scrape()
    assert response.status_code == 403
    assert b"SENTINEL_METRICS_TOKEN" in response.content


@pytest.mark.parametrize(
    ("remote_addr", "headers", "status"),
    [
        ("10.1.2.3", {}, 200),
        ("192.168.7.9", {}, 200),
        ("::ffff:10.1.2.3", {}, 200),
        ("172.16.0.1", {}, 403),
        ("10.1.2.3", {"HTTP_X_FORWARDED_FOR": "10.1.2.3"}, 403),
        ("10.1.2.3", {"HTTP_FORWARDED": "for=10.1.2.3"}, 403),
    ],
)
def test_production_allow_list_admits_direct_clients_in_its_networks(settings, remote_addr, headers, status):
    settings.PRODUCTION = True
    settings.SENTINEL_METRICS_TOKEN = None
    settings.SENTINEL_METRICS_ALLOW = ["10.0.0.0/8", "192.168.7.0/24"]
    assert scrape(REMOTE_ADDR=remote_addr, **headers).status_code == status


def test_token_and_allow_list_together_require_both(settings):
    settings.PRODUCTION = True
    settings.SENTINEL_METRICS_TOKEN = TOKEN
    settings.SENTINEL_METRICS_ALLOW = ["10.0.0.0/8"]
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    assert scrape(REMOTE_ADDR="10.0.0.5", **bearer).status_code == 200
    assert scrape(REMOTE_ADDR="10.0.0.5").status_code == 401
    assert scrape(REMOTE_ADDR="172.16.0.5", **bearer).status_code == 403


def test_metrics_only_answer_get(settings):
    settings.SENTINEL_METRICS_TOKEN = None
    assert Client().post("/metrics").status_code == 405


def test_spool_lag_is_read_from_redis_at_scrape_time(settings):
    settings.SENTINEL_METRICS_TOKEN = None
    settings.SENTINEL_METRICS_ALLOW = []
    gateway_metrics.usage_spool_lag.set(12345)  # a stale value from an earlier drain
    client = redis.Redis.from_url(settings.REDIS_URL)
    for i in range(3):
        client.xadd(spool_key(), {"r": json.dumps({"request_id": f"lag-{i}"})})
    lag = families(scrape())["sentinel_usage_spool_lag"].samples[0].value
    assert lag == 3
    client.delete(spool_key())
    lag = families(scrape())["sentinel_usage_spool_lag"].samples[0].value
    assert lag == 0


def test_metrics_request_runs_no_sql(settings, django_assert_max_num_queries, db):
    settings.SENTINEL_METRICS_TOKEN = TOKEN
    with django_assert_max_num_queries(0):
        response = scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200


def test_a_scrape_still_answers_when_redis_is_down(settings):
    settings.SENTINEL_METRICS_TOKEN = None
    settings.SENTINEL_METRICS_ALLOW = []
    gateway_metrics.usage_spool_lag.set(7)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    sredis.reset_clients()
    try:
        started = time.monotonic()
        response = scrape()
        elapsed = time.monotonic() - started
    finally:
        sredis.reset_clients()  # the settings fixture restores REDIS_URL after the test
    assert response.status_code == 200
    assert elapsed < 2
    assert families(response)["sentinel_usage_spool_lag"].samples[0].value == 7  # the last known value


def test_console_requests_are_counted_by_django_prometheus(settings, db):
    settings.SENTINEL_METRICS_TOKEN = None
    settings.SENTINEL_METRICS_ALLOW = []
    settings.MIDDLEWARE = site_settings.MIDDLEWARE  # the console's full stack

    def console_gets() -> float:
        family = families(scrape()).get("django_http_responses_total_by_status_view_method")
        return sum(s.value for s in family.samples if s.labels.get("view") == "login") if family else 0.0

    before = console_gets()
    assert Client().get(reverse("login")).status_code == 200
    assert console_gets() == before + 1


@pytest.mark.django_db(transaction=True)
def test_tenant_label_can_be_switched_off(live_server_factory, api_token, tenant):
    server = live_server_factory(SENTINEL_METRICS_TENANT_LABEL="false")
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "anonymous tenant"}]}
    response = httpx.post(
        f"{server.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {api_token}"}, timeout=20
    )
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{server.url}/metrics", timeout=10).text)}
    for name in ("sentinel_requests", "sentinel_tokens", "sentinel_cost_usd"):
        tenants = {s.labels["tenant"] for s in families[name].samples if "tenant" in s.labels}
        assert tenants == {"_all"}, (name, tenants)
    assert tenant.slug not in httpx.get(f"{server.url}/metrics", timeout=10).text


@pytest.mark.parametrize("value", ["10.0.0.0/33", "not-a-network", "10.0.0.0/8,::1/200"])
def test_a_malformed_allow_list_stops_boot_naming_the_variable(value):
    result = run_check(SENTINEL_METRICS_ALLOW=value)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "SENTINEL_METRICS_ALLOW" in lines[0], result.stderr
