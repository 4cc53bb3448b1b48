"""Static checks of the monitoring stack: Grafana dashboards, Prometheus config and alerts, compose.

No Django and no database: these read the files under monitoring/, docker-compose.yml, Dockerfile
and .env.example. When the tools are on PATH they also run

* ``promtool check rules`` on monitoring/alerts.yml and on every dashboard query (as recording
  rules, so each PromQL expression is parsed by Prometheus itself),
* ``promtool check config`` on monitoring/prometheus.yml,
* ``promtool test rules`` with synthetic series for every alert (each must fire when it should and
  stay quiet when it should not),
* ``docker-compose -f docker-compose.yml config -q``.

Debian packages: ``prometheus`` (promtool) and ``docker-compose``.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
DASHBOARD_DIR = MONITORING / "grafana" / "dashboards"
DATASOURCES_FILE = MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS_FILE = MONITORING / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
PROMETHEUS_CONFIG = MONITORING / "prometheus.yml"
ALERTS_FILE = MONITORING / "alerts.yml"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
METRICS_DOC = ROOT / "docs" / "METRICS.md"

EXPECTED_DASHBOARDS = {"sentinel-operations.json", "sentinel-cost.json"}

# ---------------------------------------------------------------------------- the metric contract
# Names as exposed on /metrics (counters with their _total suffix).
COUNTERS = {
    "sentinel_requests_total",
    "sentinel_tokens_total",
    "sentinel_cost_usd_total",
    "sentinel_cache_requests_total",
    "sentinel_guardrail_detections_total",
    "sentinel_rate_limited_total",
    "sentinel_budget_rejections_total",
}
GAUGES = {
    "sentinel_circuit_breaker_state",
    "sentinel_active_requests",
    "sentinel_active_streams",
    "sentinel_usage_spool_lag",
}
HISTOGRAMS = {
    "sentinel_request_duration_seconds",
    "sentinel_time_to_first_token_seconds",
    "sentinel_upstream_duration_seconds",
    "sentinel_gateway_overhead_seconds",
}
# Labels each sentinel metric carries (histogram series add `le`).
METRIC_LABELS = {
    "sentinel_requests_total": {"tenant", "model", "provider", "status"},
    "sentinel_tokens_total": {"tenant", "model", "type"},
    "sentinel_cost_usd_total": {"tenant", "model"},
    "sentinel_cache_requests_total": {"result"},
    "sentinel_guardrail_detections_total": {"detector", "action"},
    "sentinel_rate_limited_total": {"scope"},
    "sentinel_budget_rejections_total": {"tenant"},
    "sentinel_circuit_breaker_state": {"route"},
    "sentinel_active_requests": set(),
    "sentinel_active_streams": set(),
    "sentinel_usage_spool_lag": set(),
    "sentinel_request_duration_seconds": {"model", "provider"},
    "sentinel_time_to_first_token_seconds": {"model", "provider"},
    "sentinel_upstream_duration_seconds": {"provider"},
    "sentinel_gateway_overhead_seconds": set(),
}
# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = {"job", "instance", "service"}


def known_metric(name: str) -> bool:
    if name in COUNTERS or name in GAUGES or name == "up":
        return True
    if name.startswith(("django_", "process_")):
        return True
    if any(name == f"{counter[: -len('_total')]}_created" for counter in COUNTERS):
        return True
    return any(name in {f"{h}_bucket", f"{h}_sum", f"{h}_count", f"{h}_created"} for h in HISTOGRAMS)


def base_metric(name: str) -> str | None:
    """The contract metric a series name belongs to (histogram suffixes stripped)."""
    if name in METRIC_LABELS:
        return name
    for histogram in HISTOGRAMS:
        if name in {f"{histogram}_bucket", f"{histogram}_sum", f"{histogram}_count"}:
            return histogram
    return None


# ---------------------------------------------------------------------------- PromQL helpers
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VAR = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or"}
_KEYWORDS |= {"unless", "inf", "nan", "atan2", "start", "end"}


def grafana_variables(text: str) -> set[str]:
    """Dashboard variables referenced in a string ($var, ${var}, ${var:fmt}, [[var]])."""
    names = set()
    for match in _GRAFANA_VAR.finditer(text):
        name = next(group for group in match.groups() if group)
        if not name.startswith("__"):
            names.add(name)
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression (functions, keywords and labels left out)."""
    text = _STRING.sub('""', expr)
    text = _GRAFANA_VAR.sub("", text)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _GROUPING.sub("", text)
    text = re.sub(r"\boffset\s+-?[\w.]+", "", text)
    text = re.sub(r"@\s*[\w.()]+", "", text)
    names = set()
    for match in _IDENT.finditer(text):
        name = match.group()
        if name.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(name)
    return names


def selector_labels(expr: str) -> dict[str, set[str]]:
    """For each `metric{...}` selector, the label names it matches on."""
    result: dict[str, set[str]] = {}
    for match in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}", expr):
        labels = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", _STRING.sub('""', match.group(2))))
        result.setdefault(match.group(1), set()).update(labels)
    return result


def grouping_labels(expr: str) -> set[str]:
    labels = set()
    for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", _STRING.sub('""', expr)):
        labels.update(label.strip() for label in clause.split(",") if label.strip())
    return labels


def substitute_grafana_variables(expr: str) -> str:
    """Make a dashboard query plain PromQL so promtool can parse it."""
    for name, value in {
        "$__rate_interval": "5m",
        "${__rate_interval}": "5m",
        "$__interval_ms": "60000",
        "$__interval": "1m",
        "${__interval}": "1m",
        "$__range_s": "3600",
        "$__range_ms": "3600000",
        "$__range": "1h",
        "${__range}": "1h",
    }.items():
        expr = expr.replace(name, value)
    # Remaining variables are label values inside regex matchers.
    return _GRAFANA_VAR.sub(".*", expr)


# ---------------------------------------------------------------------------- loaders
def load_yaml(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def dashboard_paths() -> list[Path]:
    return sorted(DASHBOARD_DIR.glob("*.json"))


def load_dashboard(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def all_panels(dashboard: dict) -> list[dict]:
    """Every panel, including the ones nested in collapsed rows."""
    panels = []
    for panel in dashboard.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def query_panels(dashboard: dict) -> list[dict]:
    return [panel for panel in all_panels(dashboard) if panel.get("type") != "row"]


def template_variables(dashboard: dict) -> list[dict]:
    return dashboard.get("templating", {}).get("list", [])


def variable_query(variable: dict) -> str:
    query = variable.get("query", "")
    if isinstance(query, dict):
        query = query.get("query", "")
    return query or variable.get("definition", "")


def alert_rules() -> list[dict]:
    return [rule for group in load_yaml(ALERTS_FILE)["groups"] for rule in group["rules"]]


def provisioned_datasources() -> list[dict]:
    return load_yaml(DATASOURCES_FILE)["datasources"]


def compose() -> dict:
    return load_yaml(COMPOSE_FILE)


DASHBOARDS = pytest.mark.parametrize("path", dashboard_paths(), ids=lambda p: p.name)


def declared_metrics(module: Path) -> dict[str, set[str]]:
    """Metrics a module declares with prometheus_client, read statically (no Django import)."""
    declared = {}
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) in {"Counter", "Gauge", "Histogram"}):
            continue
        if not (node.args and isinstance(node.args[0], ast.Constant)):
            continue
        labels_node = node.args[2] if len(node.args) > 2 else None
        for keyword in node.keywords:
            if keyword.arg == "labelnames":
                labels_node = keyword.value
        labels = set()
        if isinstance(labels_node, (ast.List, ast.Tuple)):
            labels = {element.value for element in labels_node.elts if isinstance(element, ast.Constant)}
        name = node.args[0].value
        if node.func.id == "Counter" and not name.endswith("_total"):
            name += "_total"
        declared[name] = labels
    return declared


# ============================================================================ the contract itself
def test_contract_matches_gateway_metrics_module():
    module = ROOT / "gateway" / "metrics.py"
    if not module.exists():
        pytest.skip("gateway/metrics.py does not exist yet")
    declared = declared_metrics(module)
    for name, labels in METRIC_LABELS.items():
        assert name in declared, f"gateway/metrics.py does not declare {name}"
        assert declared[name] == labels, f"{name}: labels {sorted(declared[name])} != contract {sorted(labels)}"


# ============================================================================ Grafana dashboards
def test_expected_dashboards_exist():
    assert EXPECTED_DASHBOARDS <= {path.name for path in dashboard_paths()}


@DASHBOARDS
def test_dashboard_is_valid_json_with_stable_uid(path):
    dashboard = load_dashboard(path)
    assert isinstance(dashboard, dict)
    assert dashboard.get("title"), "dashboard needs a title"
    uid = dashboard.get("uid")
    assert uid, "dashboard uid must be set so links and provisioning stay stable"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid), f"uid {uid!r} is not a valid Grafana uid"
    assert uid == path.stem, "keep the uid equal to the file name so it never drifts"
    assert isinstance(dashboard.get("schemaVersion"), int) and dashboard["schemaVersion"] >= 36
    assert query_panels(dashboard), "dashboard has no panels"


def test_dashboard_uids_are_unique():
    uids = [load_dashboard(path)["uid"] for path in dashboard_paths()]
    assert len(uids) == len(set(uids))


@DASHBOARDS
def test_panel_ids_are_unique_and_layout_fits(path):
    panels = all_panels(load_dashboard(path))
    ids = [panel.get("id") for panel in panels]
    assert all(isinstance(panel_id, int) for panel_id in ids), f"every panel needs an integer id: {ids}"
    duplicates = sorted({panel_id for panel_id in ids if ids.count(panel_id) > 1})
    assert not duplicates, f"duplicate panel ids: {duplicates}"
    for panel in panels:
        grid = panel.get("gridPos", {})
        assert {"x", "y", "w", "h"} <= grid.keys(), f"panel {panel['id']} lacks a gridPos"
        assert grid["x"] + grid["w"] <= 24, f"panel {panel['id']} is wider than the 24-column grid"


@DASHBOARDS
def test_panels_use_the_provisioned_prometheus_datasource(path):
    dashboard = load_dashboard(path)
    provisioned = {ds["uid"] for ds in provisioned_datasources() if ds["type"] == "prometheus"}
    variables = {variable["name"]: variable for variable in template_variables(dashboard)}

    def check(datasource, where):
        assert isinstance(datasource, dict), f"{where}: datasource must be a {{type, uid}} object"
        assert datasource.get("type") == "prometheus", f"{where}: datasource type must be prometheus"
        uid = datasource.get("uid")
        if uid in {"${datasource}", "$datasource"}:
            variable = variables.get("datasource")
            assert variable and variable.get("type") == "datasource", f"{where}: $datasource is not defined"
            assert variable.get("query") == "prometheus", f"{where}: $datasource must list prometheus sources"
        else:
            assert uid in provisioned, f"{where}: datasource uid {uid!r} is not provisioned ({provisioned})"

    for panel in query_panels(dashboard):
        where = f"panel {panel['id']} ({panel.get('title')})"
        check(panel.get("datasource"), where)
        for target in panel.get("targets", []):
            if "datasource" in target:
                check(target["datasource"], f"{where} target {target.get('refId')}")
    for variable in template_variables(dashboard):
        if variable.get("type") == "query":
            check(variable.get("datasource"), f"variable {variable['name']}")


@DASHBOARDS
def test_panels_have_queries(path):
    for panel in query_panels(load_dashboard(path)):
        targets = panel.get("targets") or []
        assert targets, f"panel {panel['id']} ({panel.get('title')}) has no targets"
        ref_ids = [target.get("refId") for target in targets]
        assert len(ref_ids) == len(set(ref_ids)), f"panel {panel['id']} repeats a refId: {ref_ids}"
        for target in targets:
            assert str(target.get("expr", "")).strip(), f"panel {panel['id']} has a target without expr"


@DASHBOARDS
def test_dashboard_variables_are_defined(path):
    dashboard = load_dashboard(path)
    defined = {variable["name"] for variable in template_variables(dashboard)}
    texts = [target["expr"] for panel in query_panels(dashboard) for target in panel.get("targets", [])]
    texts += [variable_query(variable) for variable in template_variables(dashboard)]
    used = set().union(*(grafana_variables(text) for text in texts))
    assert used <= defined, f"undefined dashboard variables: {sorted(used - defined)}"


@DASHBOARDS
def test_dashboard_metrics_and_labels_are_in_the_contract(path):
    dashboard = load_dashboard(path)
    exprs = [target["expr"] for panel in query_panels(dashboard) for target in panel.get("targets", [])]
    for variable in template_variables(dashboard):
        match = re.fullmatch(r"\s*label_values\(\s*(?:([^,]+?)\s*,\s*)?(\w+)\s*\)\s*", variable_query(variable))
        if match and match.group(1):
            exprs.append(match.group(1))
            name = match.group(1).split("{")[0].strip()
            base = base_metric(name)
            if base is not None:
                assert match.group(2) in METRIC_LABELS[base], f"{name} has no label {match.group(2)!r}"
    for expr in exprs:
        check_expr_against_contract(expr)


def check_expr_against_contract(expr: str) -> None:
    names = metric_names(expr)
    assert names, f"no metric found in {expr!r}"
    unknown = sorted(name for name in names if not known_metric(name))
    assert not unknown, f"unknown metrics {unknown} in {expr!r}"
    for name, labels in selector_labels(expr).items():
        base = base_metric(name)
        if base is None:
            continue
        allowed = METRIC_LABELS[base] | TARGET_LABELS | ({"le"} if base in HISTOGRAMS else set())
        assert labels <= allowed, f"{name} has no label(s) {sorted(labels - allowed)} in {expr!r}"
    bases = {base_metric(name) for name in names} - {None}
    if bases:
        allowed = set().union(*(METRIC_LABELS[base] for base in bases)) | TARGET_LABELS | {"le"}
        unknown_groups = grouping_labels(expr) - allowed
        assert not unknown_groups, f"grouping by unknown label(s) {sorted(unknown_groups)} in {expr!r}"


def test_cost_dashboard_has_tenant_variable():
    dashboard = load_dashboard(DASHBOARD_DIR / "sentinel-cost.json")
    variables = {variable["name"]: variable for variable in template_variables(dashboard)}
    assert "tenant" in variables
    query = re.sub(r"\s+", "", variable_query(variables["tenant"]))
    assert query == "label_values(sentinel_cost_usd_total,tenant)"
    exprs = [target["expr"] for panel in query_panels(dashboard) for target in panel["targets"]]
    assert any("$tenant" in expr for expr in exprs), "no panel filters on $tenant"


def test_operations_dashboard_covers_the_gateway_signals():
    dashboard = load_dashboard(DASHBOARD_DIR / "sentinel-operations.json")
    names = set()
    for panel in query_panels(dashboard):
        for target in panel["targets"]:
            names |= {base_metric(name) or name for name in metric_names(target["expr"])}
    assert {
        "sentinel_requests_total",
        "sentinel_request_duration_seconds",
        "sentinel_time_to_first_token_seconds",
        "sentinel_gateway_overhead_seconds",
        "sentinel_cache_requests_total",
        "sentinel_guardrail_detections_total",
        "sentinel_circuit_breaker_state",
        "sentinel_active_requests",
        "sentinel_active_streams",
        "sentinel_usage_spool_lag",
        "sentinel_rate_limited_total",
    } <= names


# ============================================================================ Grafana provisioning
def test_grafana_datasource_provisioning():
    datasources = provisioned_datasources()
    prometheus = [ds for ds in datasources if ds.get("uid") == "prometheus"]
    assert len(prometheus) == 1
    assert prometheus[0]["type"] == "prometheus"
    assert prometheus[0]["url"] == "http://prometheus:9090"


def test_grafana_dashboard_provider_matches_compose_mount():
    providers = load_yaml(DASHBOARD_PROVIDERS_FILE)["providers"]
    paths = {provider["options"]["path"] for provider in providers if provider.get("type", "file") == "file"}
    mounts = {}
    for volume in compose()["services"]["grafana"]["volumes"]:
        source, target, *mode = volume.split(":")
        mounts[source] = (target, mode)
    dashboards_target, dashboards_mode = mounts["./monitoring/grafana/dashboards"]
    provisioning_target, provisioning_mode = mounts["./monitoring/grafana/provisioning"]
    assert dashboards_target in paths, f"provider paths {paths} do not include the mount {dashboards_target}"
    assert provisioning_target == "/etc/grafana/provisioning"
    assert dashboards_mode == ["ro"] and provisioning_mode == ["ro"], "mount Grafana files read-only"


# ============================================================================ Prometheus alerts
def test_alert_rules_structure():
    rules = alert_rules()
    assert rules
    names = [rule.get("alert") for rule in rules]
    assert all(names), "every rule must be an alerting rule with a name"
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in rules:
        name = rule["alert"]
        assert str(rule.get("expr", "")).strip(), f"{name}: expr"
        assert re.fullmatch(r"(\d+[smhdwy])+", str(rule.get("for", ""))), f"{name}: for must be a duration"
        assert rule.get("labels", {}).get("severity") in {"critical", "warning", "info"}, f"{name}: severity"
        annotations = rule.get("annotations", {})
        assert str(annotations.get("summary", "")).strip(), f"{name}: summary annotation"
        assert str(annotations.get("description", "")).strip(), f"{name}: description annotation"
        assert re.fullmatch(r"docs/METRICS\.md#[a-z0-9_-]+", str(annotations.get("runbook", ""))), (
            f"{name}: runbook annotation must point at docs/METRICS.md#<anchor>"
        )


def test_alerts_cover_the_required_conditions():
    metrics_by_alert = {rule["alert"]: metric_names(str(rule["expr"])) for rule in alert_rules()}
    used = set().union(*metrics_by_alert.values())
    for required in [
        "sentinel_requests_total",  # 5xx ratio
        "sentinel_request_duration_seconds_bucket",  # p95 latency
        "sentinel_time_to_first_token_seconds_bucket",  # p95 TTFT
        "sentinel_cost_usd_total",  # spend spike
        "sentinel_circuit_breaker_state",  # circuit open
        "sentinel_usage_spool_lag",  # spool lag
        "sentinel_budget_rejections_total",  # budget exhaustion
        "up",  # target down
    ]:
        assert required in used, f"no alert on {required}"
    spend = [rule for rule in alert_rules() if "sentinel_cost_usd_total" in metric_names(str(rule["expr"]))]
    assert any("offset 1d" in str(rule["expr"]) for rule in spend), "spend spike compares with 1d ago"


def test_alert_metrics_and_labels_are_in_the_contract():
    for rule in alert_rules():
        check_expr_against_contract(str(rule["expr"]))


def github_anchors(markdown: str) -> set[str]:
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", markdown, flags=re.MULTILINE):
        explicit = re.search(r"\{#([\w-]+)\}\s*$", heading)
        if explicit:
            anchors.add(explicit.group(1))
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    anchors |= set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", markdown))
    return anchors


def test_alert_runbook_anchors_exist_in_metrics_doc():
    if not METRICS_DOC.exists():
        pytest.skip("docs/METRICS.md does not exist yet")
    anchors = github_anchors(METRICS_DOC.read_text(encoding="utf-8"))
    missing = sorted(
        rule["annotations"]["runbook"].split("#", 1)[1]
        for rule in alert_rules()
        if rule["annotations"]["runbook"].split("#", 1)[1] not in anchors
    )
    assert not missing, f"docs/METRICS.md has no heading for runbook anchors {missing}"


# ============================================================================ Prometheus config
def test_prometheus_config_structure():
    config = load_yaml(PROMETHEUS_CONFIG)
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS_CONFIG.parent / rule_file).exists(), f"rule file {rule_file} does not exist"
    assert "alerts.yml" in config["rule_files"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    web = jobs["sentinel"]
    targets = [target for group in web["static_configs"] for target in group["targets"]]
    assert targets == ["web:8000"]
    assert web.get("metrics_path", "/metrics") == "/metrics"
    auth = web["authorization"]
    assert auth.get("type", "Bearer") == "Bearer"
    assert auth.get("credentials_file") or auth.get("credentials"), "scrape must send the metrics token"
    alerts_on_up = [rule for rule in alert_rules() if "up" in metric_names(str(rule["expr"]))]
    assert all('job="sentinel"' in str(rule["expr"]) for rule in alerts_on_up), "up alert must match the job"


def test_compose_writes_the_token_file_prometheus_reads():
    credentials_file = load_yaml(PROMETHEUS_CONFIG)["scrape_configs"][0]["authorization"]["credentials_file"]
    service = compose()["services"]["prometheus"]
    command = " ".join(service["command"]) if isinstance(service["command"], list) else service["command"]
    assert f"> {credentials_file}" in command, "the prometheus service must write the credentials file"
    assert "SENTINEL_METRICS_TOKEN" in service["environment"]


# ============================================================================ docker-compose
def test_compose_services_healthchecks_and_dependencies():
    data = compose()
    services = data["services"]
    assert {"postgres", "redis", "web", "worker", "beat", "prometheus", "grafana", "mock"} <= services.keys()
    for name, service in services.items():
        healthcheck = service.get("healthcheck")
        assert healthcheck and healthcheck.get("test") and not healthcheck.get("disable"), f"{name}: healthcheck"
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert isinstance(spec, dict), f"{name}: depends_on {dependency} must state a condition"
            assert spec.get("condition") == "service_healthy", f"{name}: {dependency} condition"
            assert dependency in services
    assert services["mock"].get("profiles") == ["mock"]
    assert services["postgres"]["image"].split(":")[1].startswith("16")
    assert services["redis"]["image"].split(":")[1].startswith("7")
    assert any(str(port).endswith(":8000") for port in services["web"]["ports"])
    assert any(str(port).endswith(":18000") for port in services["mock"]["ports"])
    named = set(data.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in named, f"{name}: volume {source} is not declared"


def test_compose_variables_are_documented_in_env_example():
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text(encoding="utf-8")))
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(encoding="utf-8"), re.M))
    assert used, "compose file uses no variables?"
    assert used <= documented, f".env.example does not list {sorted(used - documented)}"
    for variable in [
        "DJANGO_SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "ALLOWED_HOSTS",
        "SENTINEL_ENV",
        "DJANGO_LOG_LEVEL",
        "SENTINEL_METRICS_TOKEN",
        "SENTINEL_CATALOG",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "SENTINEL_MOCK_BASE_URL",
    ]:
        assert variable in documented, f".env.example does not list {variable}"


def test_compose_validates_without_required_variables():
    """Every ${VAR} has a default, so the file validates with no .env and an empty environment."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    bare = re.findall(r"(?<!\$)\$\{([A-Za-z_]\w*)\}", text) + re.findall(r"(?<!\$)\$\{[A-Za-z_]\w*:?\?", text)
    assert not bare, f"variables without a default: {bare}"
    assert "env_file" not in text, "env_file fails validation when .env is missing on docker-compose v1"


def test_dockerfile_shape():
    text = DOCKERFILE.read_text(encoding="utf-8")
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", text, flags=re.MULTILINE | re.IGNORECASE)
    assert len(stages) >= 2, "multi-stage build expected"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.12-slim$", text, flags=re.MULTILINE)
    assert re.search(r"^USER sentinel$", text, flags=re.MULTILINE)
    assert re.search(r"^EXPOSE 8000$", text, flags=re.MULTILINE)
    assert "collectstatic" in text
    assert re.search(r"^HEALTHCHECK .*\n?.*/health/live", text, flags=re.MULTILINE)
    assert re.search(r'^CMD \["python", "-m", "sentinel_site\.serve".*\]$', text, flags=re.MULTILINE)
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", ".env"} <= set(ignored)


# ============================================================================ external tools
def run_tool(args: list[str], cwd: Path = ROOT, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def tool_output(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


requires_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not on PATH (Debian package `prometheus`; scripts/ensure_system_deps.sh installs it)",
)


@requires_promtool
def test_promtool_check_rules():
    result = run_tool(["promtool", "check", "rules", str(ALERTS_FILE)])
    assert result.returncode == 0, tool_output(result)


@requires_promtool
def test_promtool_check_config(tmp_path):
    # Syntax of the file as committed (the credentials file only exists inside the container).
    result = run_tool(["promtool", "check", "config", "--syntax-only", str(PROMETHEUS_CONFIG)])
    assert result.returncode == 0, tool_output(result)

    # Full check, rule files included, on a copy whose credentials file points at a temporary token.
    config = load_yaml(PROMETHEUS_CONFIG)
    token = tmp_path / "metrics_token"
    token.write_text("test-token")
    for job in config["scrape_configs"]:
        if job.get("authorization", {}).get("credentials_file"):
            job["authorization"]["credentials_file"] = str(token)
    for rule_file in config.get("rule_files", []):
        destination = tmp_path / rule_file
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROMETHEUS_CONFIG.parent / rule_file, destination)
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config, sort_keys=False))
    result = run_tool(["promtool", "check", "config", str(copy)])
    assert result.returncode == 0, tool_output(result)
    assert "SUCCESS" in result.stdout + result.stderr


@requires_promtool
def test_promtool_parses_every_dashboard_query(tmp_path):
    rules = []
    for path in dashboard_paths():
        dashboard = load_dashboard(path)
        prefix = re.sub(r"\W", "_", dashboard["uid"])
        for panel in query_panels(dashboard):
            for target in panel["targets"]:
                rules.append(
                    {
                        "record": f"dashboard:{prefix}:panel{panel['id']}_{target['refId']}",
                        "expr": substitute_grafana_variables(target["expr"]),
                    }
                )
    rules_file = tmp_path / "dashboard_queries.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, sort_keys=False))
    result = run_tool(["promtool", "check", "rules", str(rules_file)])
    assert result.returncode == 0, tool_output(result)


def _series(name: str, labels: dict[str, str], values: str) -> dict:
    rendered = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{name}{{{rendered}}}", "values": values}


def _histogram(name: str, labels: dict[str, str], buckets: dict[str, str]) -> list[dict]:
    return [_series(f"{name}_bucket", {**labels, "le": le}, values) for le, values in buckets.items()]


# Each case: synthetic input series, then for an alert the label sets expected at given times (the
# alert's own labels, e.g. severity, are added from alerts.yml). Series are one sample per minute;
# "0+60x30" is 0, 60, 120, ... (31 samples), "5000x20" is 21 samples of 5000.
OPENAI = {"tenant": "acme", "model": "gpt-4o", "provider": "openai"}
ANTHROPIC = {"tenant": "acme", "model": "claude-sonnet", "provider": "anthropic"}
MOCK = {"tenant": "acme", "model": "mock-small", "provider": "mock"}
ALERT_CASES = {
    "SentinelTargetDown": (
        [
            _series("up", {"job": "sentinel", "instance": "web:8000"}, "0x10"),
            _series("up", {"job": "sentinel", "instance": "web-2:8000"}, "1x10"),
        ],
        {"1m": [], "3m": [{"job": "sentinel", "instance": "web:8000"}]},
    ),
    "SentinelHighErrorRate": (
        [
            _series("sentinel_requests_total", {**OPENAI, "status": "200"}, "0+60x30"),
            _series("sentinel_requests_total", {**OPENAI, "status": "502"}, "0+30x30"),
            _series("sentinel_requests_total", {**ANTHROPIC, "status": "200"}, "0+60x30"),
            _series("sentinel_requests_total", {**ANTHROPIC, "status": "500"}, "0+1x30"),
            # 100% errors but too little traffic to page anyone.
            _series("sentinel_requests_total", {**MOCK, "status": "502"}, "0+1x30"),
        ],
        {"4m": [], "12m": [{"provider": "openai"}]},
    ),
    "SentinelCircuitOpen": (
        [
            _series("sentinel_circuit_breaker_state", {"route": "openai/gpt-4o"}, "0x4 1x3 2x3 1x10"),
            _series("sentinel_circuit_breaker_state", {"route": "anthropic/claude-sonnet"}, "0x20"),
        ],
        {"8m": [], "12m": [{"route": "openai/gpt-4o"}]},
    ),
    "SentinelHighLatencyP95": (
        _histogram(
            "sentinel_request_duration_seconds",
            {"model": "gpt-4o", "provider": "openai"},
            {"1": "0x30", "10": "0x30", "60": "0+10x30", "+Inf": "0+10x30"},
        )
        + _histogram(
            "sentinel_request_duration_seconds",
            {"model": "gpt-4o-mini", "provider": "openai"},
            {"1": "0+10x30", "10": "0+10x30", "60": "0+10x30", "+Inf": "0+10x30"},
        ),
        {"5m": [], "15m": [{"model": "gpt-4o", "provider": "openai"}]},
    ),
    "SentinelHighTTFTP95": (
        _histogram(
            "sentinel_time_to_first_token_seconds",
            {"model": "claude-sonnet", "provider": "anthropic"},
            {"1": "0x30", "10": "0+10x30", "+Inf": "0+10x30"},
        )
        + _histogram(
            "sentinel_time_to_first_token_seconds",
            {"model": "gpt-4o", "provider": "openai"},
            {"1": "0+10x30", "10": "0+10x30", "+Inf": "0+10x30"},
        ),
        {"5m": [], "15m": [{"model": "claude-sonnet", "provider": "anthropic"}]},
    ),
    "SentinelGatewayOverheadHigh": (
        _histogram(
            "sentinel_gateway_overhead_seconds",
            {"job": "sentinel", "instance": "web:8000"},
            {"0.01": "0x30", "0.5": "0+10x30", "+Inf": "0+10x30"},
        ),
        {"10m": [], "20m": [{}]},
    ),
    "SentinelUsageSpoolLag": (
        [
            _series("sentinel_usage_spool_lag", {"job": "sentinel", "instance": "web:8000"}, "5000x20"),
            _series("sentinel_usage_spool_lag", {"job": "sentinel", "instance": "web-2:8000"}, "10x20"),
        ],
        {"5m": [], "12m": [{}]},
    ),
    "SentinelBudgetExhausted": (
        [
            _series("sentinel_budget_rejections_total", {"tenant": "acme"}, "0+2x30"),
            _series("sentinel_budget_rejections_total", {"tenant": "globex"}, "0x30"),
        ],
        {"5m": [], "12m": [{"tenant": "acme"}]},
    ),
    "SentinelSpendSpike": (
        [
            # $0.60/h for a day, then $6/h: 10x the same hour yesterday.
            _series("sentinel_cost_usd_total", {"tenant": "acme", "model": "gpt-4o"}, "0+0.01x1440 14.5+0.1x120"),
            # Steady $3/h: no spike.
            _series("sentinel_cost_usd_total", {"tenant": "globex", "model": "gpt-4o"}, "0+0.05x1561"),
            # 10x, but only $0.60/h: below the $1/h floor.
            _series("sentinel_cost_usd_total", {"tenant": "initech", "model": "gpt-4o"}, "0+0.001x1440 1.45+0.01x120"),
        ],
        {"1440m": [], "1560m": [{"tenant": "acme"}]},
    ),
}


def test_every_alert_has_a_unit_test_case():
    assert {rule["alert"] for rule in alert_rules()} == set(ALERT_CASES)


@requires_promtool
def test_promtool_alert_unit_tests(tmp_path):
    # promtool compares annotations exactly; their templates are covered by `check rules`, so the
    # unit tests run on a copy without them.
    groups = load_yaml(ALERTS_FILE)
    for group in groups["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    rules_file = tmp_path / "alerts_without_annotations.yml"
    rules_file.write_text(yaml.safe_dump(groups, sort_keys=False))

    own_labels = {rule["alert"]: rule.get("labels", {}) for rule in alert_rules()}
    tests = []
    for alert, (series, expectations) in ALERT_CASES.items():
        tests.append(
            {
                "name": alert,
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": eval_time,
                        "alertname": alert,
                        "exp_alerts": [{"exp_labels": {**labels, **own_labels[alert]}} for labels in expected],
                    }
                    for eval_time, expected in expectations.items()
                ],
            }
        )
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(
        yaml.safe_dump({"rule_files": [str(rules_file)], "evaluation_interval": "1m", "tests": tests}, sort_keys=False)
    )
    result = run_tool(["promtool", "test", "rules", str(test_file)], timeout=300)
    assert result.returncode == 0, tool_output(result)


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose not on PATH (Debian package `docker-compose`; scripts/ensure_system_deps.sh installs it)",
)
def test_docker_compose_config_is_valid(tmp_path):
    # The compose file copied to a directory with no .env (a developer's .env must not hide a missing
    # default), without COMPOSE_*/DOCKER_* overrides from the caller's environment.
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(COMPOSE_FILE, project / "docker-compose.yml")
    (project / "monitoring").symlink_to(MONITORING)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("COMPOSE_", "DOCKER_"))}
    env["HOME"] = str(tmp_path)
    result = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config", "-q"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, tool_output(result)

    # And from the repository itself, as CI and developers run it.
    result = run_tool(["docker-compose", "-f", "docker-compose.yml", "config", "-q"])
    assert result.returncode == 0, tool_output(result)
