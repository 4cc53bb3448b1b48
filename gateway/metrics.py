"""Sentinel's Prometheus metrics (names are a contract with monitoring/ dashboards and alerts)."""

from __future__ import annotations

from django.conf import settings
from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25)

requests_total = Counter("sentinel_requests_total", "Gateway requests", ["tenant", "model", "provider", "status"])
request_duration = Histogram(
    "sentinel_request_duration_seconds", "Gateway request duration", ["model", "provider"], buckets=LATENCY_BUCKETS
)
ttft = Histogram(
    "sentinel_time_to_first_token_seconds",
    "Time to first streamed token",
    ["model", "provider"],
    buckets=LATENCY_BUCKETS,
)
upstream_duration = Histogram(
    "sentinel_upstream_duration_seconds", "Upstream call duration", ["provider"], buckets=LATENCY_BUCKETS
)
overhead = Histogram("sentinel_gateway_overhead_seconds", "Time spent in Sentinel itself", buckets=OVERHEAD_BUCKETS)
tokens_total = Counter("sentinel_tokens_total", "Tokens", ["tenant", "model", "type"])
cost_usd_total = Counter("sentinel_cost_usd_total", "Cost charged (USD)", ["tenant", "model"])
cache_requests_total = Counter("sentinel_cache_requests_total", "Response cache lookups", ["result"])
guardrail_detections_total = Counter(
    "sentinel_guardrail_detections_total", "Guardrail detections", ["detector", "action"]
)
rate_limited_total = Counter("sentinel_rate_limited_total", "Requests denied by a rate limit", ["scope"])
budget_rejections_total = Counter("sentinel_budget_rejections_total", "Requests denied by a budget", ["tenant"])
# multiprocess_mode (only used when PROMETHEUS_MULTIPROC_DIR is set, see docs/METRICS.md): "live*"
# modes drop a process's value when it exits, so a dead worker's open breaker or old lag never lingers.
circuit_breaker_state = Gauge(
    "sentinel_circuit_breaker_state", "0 closed, 1 open, 2 half-open", ["route"], multiprocess_mode="livemax"
)
active_requests = Gauge("sentinel_active_requests", "Requests in flight", multiprocess_mode="livesum")
active_streams = Gauge("sentinel_active_streams", "Streams in flight", multiprocess_mode="livesum")
# Set by the spool drain and, at every scrape, by /metrics itself (sentinel_site/metrics_view.py).
usage_spool_lag = Gauge(
    "sentinel_usage_spool_lag", "Usage events waiting in the spool", multiprocess_mode="livemostrecent"
)


def tenant_label(slug: str) -> str:
    """The tenant label value; "_all" when tenant labels are switched off (very many tenants)."""
    return slug if settings.SENTINEL_METRICS_TENANT_LABEL else "_all"
