"""A real Prometheus (Debian's ``prometheus`` package, installed by scripts/ensure_system_deps.sh)
scrapes a live Sentinel with the bearer token every second while the gateway serves traffic; the
dashboards' and alerts' expressions are then run through Prometheus' HTTP API."""

import math
import shutil
import subprocess
import time
from decimal import Decimal

import httpx
import openai
import pytest
import yaml

from tenants.services import api_key_create
from tests.conftest import ARTIFACTS, free_port
from tests.monitoring.test_dashboards import (
    ALERTS_FILE,
    alert_rules,
    dashboard_paths,
    load_dashboard,
    query_panels,
    substitute_grafana_variables,
    template_variables,
    variable_query,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        shutil.which("prometheus") is None,
        reason="prometheus not on PATH (Debian package `prometheus`; scripts/ensure_system_deps.sh installs it)",
    ),
]

TOKEN = "scrape-test-token-5d1e"
# Dashboard queries that cannot have data in a test that lasts a minute, and why.
NO_DATA_EXPECTED = {
    # Compares with the same time yesterday (`offset 1d`): this Prometheus is a minute old.
    ("sentinel-cost", "Spend rate vs. same time yesterday", "B"),
}


class Prometheus:
    def __init__(self, tmp_path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN)
        shutil.copy(ALERTS_FILE, tmp_path / "alerts.yml")
        job = {
            "metrics_path": "/metrics",
            "scrape_interval": "1s",
            "scrape_timeout": "900ms",
            "static_configs": [{"targets": [target], "labels": {"service": "web"}}],
        }
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [
                {
                    "job_name": "sentinel",
                    **job,
                    "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
                },
                {"job_name": "sentinel-without-token", **job},
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = ARTIFACTS / f"prometheus-{self.port}.log"
        ARTIFACTS.mkdir(exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str, **params) -> dict:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=10)
        return response.json()

    def query(self, expr: str) -> dict:
        return self.get("/api/v1/query", query=expr)

    def wait(self, predicate, what: str, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = predicate()
                if value:
                    return value
            except (httpx.HTTPError, ValueError):
                pass  # not listening yet, or still starting up ("Service Unavailable" is not JSON)
            assert self.proc.poll() is None, f"prometheus exited: {self.log_path.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.25)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._log.close()


@pytest.fixture
def scraped_server(live_server_factory):
    return live_server_factory(SENTINEL_METRICS_TOKEN=TOKEN)


@pytest.fixture
def prometheus(tmp_path, scraped_server):
    instance = Prometheus(tmp_path, scraped_server.url.removeprefix("http://"))
    yield instance
    instance.stop()


def samples(result: dict) -> list[float]:
    return [float(item["value"][1]) for item in result["data"]["result"]]


def send_traffic(url: str, tokens: dict[str, str]) -> None:
    """Everything the dashboards show: completions, streams, embeddings, cache hits, a guardrail
    flag, a fallback past a failing route (its breaker opens), upstream 502s, a rate limit and a
    budget refusal."""
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=tokens["main"], max_retries=0, timeout=20)
    for model in ("gpt-test", "claude-test"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"hello {time.time()}"}])
        stream = client.chat.completions.create(
            model=model,
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": f"stream {time.time()}"}],
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    for _ in range(2):  # the second one is a cache hit
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "cached question"}])
    client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": f"mail me at jane.doe@example.com {time.time()}"}]
    )
    client.embeddings.create(model="embed-test", input=f"embed {time.time()}")
    client.chat.completions.create(model="flaky-test", messages=[{"role": "user", "content": f"f {time.time()}"}])
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="reset-test", messages=[{"role": "user", "content": "reset"}])
    limited = openai.OpenAI(base_url=f"{url}/v1", api_key=tokens["rpm1"], max_retries=0, timeout=20)
    with pytest.raises(openai.RateLimitError):
        for _ in range(3):
            limited.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    broke = openai.OpenAI(base_url=f"{url}/v1", api_key=tokens["broke"], max_retries=0, timeout=20)
    with pytest.raises(openai.RateLimitError) as refused:
        broke.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.code == "insufficient_quota"


def test_prometheus_scrapes_the_live_gateway_and_every_dashboard_query_has_data(
    catalog, tenant, user, scraped_server, prometheus
):
    started = time.monotonic()
    tenant.guardrails = {"pii": "flag"}
    tenant.cache_ttl_seconds = 300
    tenant.save(update_fields=["guardrails", "cache_ttl_seconds"])
    tokens = {
        "main": api_key_create(tenant=tenant, actor=user, name="main")[1],
        "rpm1": api_key_create(tenant=tenant, actor=user, name="rpm1", rpm=1)[1],
        "broke": api_key_create(tenant=tenant, actor=user, name="broke", budget_usd=Decimal("0.000001"))[1],
    }

    prometheus.wait(lambda: samples(prometheus.query('up{job="sentinel"}')) == [1.0], "a scrape with the token")
    # Traffic twice, with scrapes in between: a counter's rate needs it to grow between two samples.
    send_traffic(scraped_server.url, tokens)
    time.sleep(2.5)
    send_traffic(scraped_server.url, tokens)
    prometheus.wait(
        # 11 requests reach the upstream in the first round, 10 in the second (the rpm=1 key's
        # first request of the round is refused then); refusals are not in sentinel_requests_total.
        lambda: sum(samples(prometheus.query('sum(sentinel_requests_total{job="sentinel"})'))) >= 21,
        "the second round of traffic in Prometheus",
    )
    time.sleep(2.5)

    # The scrape is authenticated: the same target without the token is down with a 401.
    targets = prometheus.get("/api/v1/targets")["data"]["activeTargets"]
    without = next(t for t in targets if t["labels"]["job"] == "sentinel-without-token")
    assert without["health"] == "down" and "401" in without["lastError"]

    missing = []
    for path in dashboard_paths():
        dashboard = load_dashboard(path)
        for variable in template_variables(dashboard):
            series, label = variable_query(variable).removeprefix("label_values(").rstrip(")").split(",")
            values = prometheus.get(f"/api/v1/label/{label.strip()}/values", **{"match[]": series.strip()})
            assert values["status"] == "success" and values["data"], f"{path.stem}: variable {variable['name']}"
        for panel in query_panels(dashboard):
            for target in panel["targets"]:
                expr = substitute_grafana_variables(target["expr"])
                result = prometheus.query(expr)
                assert result["status"] == "success", f"{path.stem} / {panel['title']}: {result}"
                has_data = any(not math.isnan(v) for v in samples(result))
                if (path.stem, panel["title"], target["refId"]) in NO_DATA_EXPECTED:
                    assert not has_data
                elif not has_data:
                    missing.append(f"{path.stem} / {panel['title']} / {target['refId']}: {expr}")
    assert not missing, "dashboard queries without data:\n" + "\n".join(missing)

    for rule in alert_rules():
        result = prometheus.query(rule["expr"])
        assert result["status"] == "success", f"{rule['alert']}: {result}"
    # Prometheus loaded the same rules and evaluates them without errors.
    groups = prometheus.get("/api/v1/rules")["data"]["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(loaded) == {rule["alert"] for rule in alert_rules()}
    prometheus.wait(
        lambda: all(
            rule["health"] == "ok"
            for group in prometheus.get("/api/v1/rules")["data"]["groups"]
            for rule in group["rules"]
        ),
        "alert rules evaluated",
    )
    assert time.monotonic() - started < 60
