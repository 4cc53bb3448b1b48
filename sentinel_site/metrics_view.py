"""``GET /metrics``: the Prometheus exposition of django-prometheus' and Sentinel's metrics.

Served by the lean API handler (``sentinel_site/asgi.py``): async, no sessions, no database.

Access (see docs/METRICS.md, "Protecting /metrics"):

* ``SENTINEL_METRICS_TOKEN`` set -> ``Authorization: Bearer <token>`` is required (401 otherwise).
* ``SENTINEL_METRICS_ALLOW`` set (CIDRs) -> the client address must be in one of them and the
  request must come straight from it, without ``X-Forwarded-For``/``Forwarded`` (403 otherwise).
* ``SENTINEL_ENV=production`` with neither set -> 403: metrics name tenants and models, so a
  production deployment must choose who may read them.

Several worker processes: when ``PROMETHEUS_MULTIPROC_DIR`` is set (``sentinel_site.serve``
sets it for ``--workers`` > 1), every process writes its samples to files there and this view
aggregates all of them with ``MultiProcessCollector``, so any worker answers for the whole server.

``sentinel_usage_spool_lag`` is read from Redis at scrape time: the spool drain that also sets it
runs in Celery, a process Prometheus does not scrape.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import logging
import os

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from prometheus_client.exposition import choose_encoder
from redis.exceptions import RedisError

from gateway import metrics as gateway_metrics

log = logging.getLogger("sentinel.metrics")

SPOOL_LAG_TIMEOUT = 0.5  # seconds; a scrape must not hang on Redis


@functools.lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _address_allowed(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in _networks(tuple(settings.SENTINEL_METRICS_ALLOW)))


def _forwarded(request: HttpRequest) -> bool:
    # The allow-list admits direct connections only: behind a proxy the peer is the proxy (often
    # inside an allowed network) and X-Forwarded-For is whatever the client wrote. Use the token.
    return bool(request.headers.get("x-forwarded-for") or request.headers.get("forwarded"))


def _bearer(request: HttpRequest) -> str:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def _denied(request: HttpRequest) -> HttpResponse | None:
    """The refusal for this client, or None when it may read the metrics."""
    token = settings.SENTINEL_METRICS_TOKEN
    allow = settings.SENTINEL_METRICS_ALLOW
    if allow and (_forwarded(request) or not _address_allowed(request.META.get("REMOTE_ADDR", ""))):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    if token:
        if not hmac.compare_digest(_bearer(request).encode(), token.encode()):
            response = HttpResponse("a valid bearer token is required\n", status=401, content_type="text/plain")
            response["www-authenticate"] = 'Bearer realm="metrics"'
            return response
        return None
    if settings.PRODUCTION and not allow:
        return HttpResponse(
            "metrics are closed: set SENTINEL_METRICS_TOKEN or SENTINEL_METRICS_ALLOW\n",
            status=403,
            content_type="text/plain",
        )
    return None


async def _refresh_spool_lag() -> None:
    from billing.services import usage_spool_lag

    try:
        lag = await asyncio.wait_for(
            sync_to_async(usage_spool_lag, thread_sensitive=False)(), timeout=SPOOL_LAG_TIMEOUT
        )
    except (TimeoutError, RedisError, OSError) as exc:
        # Redis down or slow: the scrape still answers, the gauge keeps its last value (Redis
        # being unreachable shows in /health/ready and in the gateway's own logs).
        log.warning("usage spool lag not refreshed: %s", type(exc).__name__)
        return
    gateway_metrics.usage_spool_lag.set(lag)


def registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        aggregated = CollectorRegistry()
        multiprocess.MultiProcessCollector(aggregated)
        return aggregated
    return REGISTRY


def render(accept: str) -> tuple[bytes, str]:
    encoder, content_type = choose_encoder(accept)
    return encoder(registry()), content_type


async def metrics(request: HttpRequest) -> HttpResponse:
    if request.method not in {"GET", "HEAD"}:
        return HttpResponse(status=405, headers={"allow": "GET, HEAD"})
    denied = _denied(request)
    if denied is not None:
        return denied
    await _refresh_spool_lag()
    # Off the event loop: with many worker processes the aggregation reads one file per process.
    body, content_type = await sync_to_async(render, thread_sensitive=False)(request.headers.get("accept", ""))
    response = HttpResponse(body, content_type=content_type)
    response["cache-control"] = "no-store"
    return response
