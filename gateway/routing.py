"""Routing: a model's routes by priority (weighted within a priority), retries with backoff
before the first byte, fallback to the next route, and a circuit breaker per route.

Breaker (per route, per process): closed -> open after ``SENTINEL_BREAKER_FAILURES`` consecutive
failures -> half-open after ``SENTINEL_BREAKER_COOLDOWN`` seconds, when exactly one probe request is
let through: success closes it, failure re-opens it. State is exported as
``sentinel_circuit_breaker_state{route}`` (0 closed, 1 open, 2 half-open).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from django.conf import settings

from gateway import metrics
from gateway.catalog import ModelInfo, RouteInfo
from gateway.errors import GatewayError, InvalidRequest, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from gateway.providers.base import UpstreamFailure

CLOSED, OPEN, HALF_OPEN = 0, 1, 2


class Breaker:
    __slots__ = ("failures", "label", "opened_at", "probing", "state")

    def __init__(self, label: str) -> None:
        self.label = label
        self.state = CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.probing = False

    def _set(self, state: int) -> None:
        if state != self.state:
            self.state = state
            metrics.circuit_breaker_state.labels(route=self.label).set(state)

    def allow(self) -> bool:
        if self.state == CLOSED:
            return True
        if self.state == OPEN and time.monotonic() - self.opened_at >= settings.SENTINEL_BREAKER_COOLDOWN:
            self._set(HALF_OPEN)
            self.probing = False
        if self.state == HALF_OPEN and not self.probing:
            self.probing = True  # exactly one probe
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.probing = False
        self._set(CLOSED)

    def failure(self) -> None:
        self.failures += 1
        self.probing = False
        if self.state == HALF_OPEN or self.failures >= settings.SENTINEL_BREAKER_FAILURES:
            self.opened_at = time.monotonic()
            self._set(OPEN)


_breakers: dict[int, Breaker] = {}


def breaker_for(route: RouteInfo) -> Breaker:
    breaker = _breakers.get(route.id)
    if breaker is None:
        breaker = _breakers[route.id] = Breaker(route.label)
    return breaker


@dataclass(slots=True)
class Attempts:
    count: int = 0
    route: RouteInfo | None = None
    failures: list[str] = field(default_factory=list)


def ordered_routes(model: ModelInfo) -> list[RouteInfo]:
    """Priority groups in order; within a group, a weighted random order (spreads load)."""
    out: list[RouteInfo] = []
    groups: dict[int, list[RouteInfo]] = {}
    for route in model.routes:
        groups.setdefault(route.priority, []).append(route)
    for priority in sorted(groups):
        group = groups[priority]
        if len(group) == 1:
            out.extend(group)
            continue
        pool = list(group)
        while pool:
            pick = random.choices(pool, weights=[max(r.weight, 0) or 1 for r in pool])[0]
            pool.remove(pick)
            out.append(pick)
    return out


def to_gateway_error(failure: UpstreamFailure | None) -> GatewayError:
    if failure is None:
        return UpstreamUnavailable(
            "No upstream route is available for this model right now (circuit open).", code="circuit_open"
        )
    if failure.client_error:
        return InvalidRequest(
            f"The provider rejected the request: {failure.client_error['message']}", code="upstream_invalid_request"
        )
    if failure.kind == "timeout":
        return UpstreamTimeout("The upstream provider did not answer in time.")
    if failure.kind == "config":
        return UpstreamUnavailable(
            "The upstream provider for this model is not configured.", code="provider_not_configured"
        )
    if failure.status == 429:
        headers = {"retry-after": str(int(failure.retry_after or 1))}
        return UpstreamUnavailable(
            "The upstream provider is rate limiting; try again shortly.", code="upstream_rate_limited", headers=headers
        )
    return UpstreamError("The upstream provider failed to answer.")


async def call_with_routes[T](model: ModelInfo, op: Callable[[RouteInfo], Awaitable[T]], attempts: Attempts) -> T:
    """Run ``op`` on the model's routes until one answers. Only call it before the first byte."""
    last: UpstreamFailure | None = None
    retries = settings.SENTINEL_RETRIES
    for route in ordered_routes(model):
        breaker = breaker_for(route)
        if not breaker.allow():
            continue
        for attempt in range(retries + 1):
            attempts.count += 1
            started = time.perf_counter()
            try:
                result = await op(route)
            except UpstreamFailure as failure:
                metrics.upstream_duration.labels(provider=route.provider.name).observe(time.perf_counter() - started)
                last = failure
                attempts.failures.append(f"{route.label}: {failure.message}")
                if failure.client_error:
                    breaker.success()  # the provider is healthy; the request is wrong
                    raise to_gateway_error(failure) from None
                breaker.failure()
                if not failure.retryable or attempt == retries or breaker.state != CLOSED:
                    break
                delay = failure.retry_after if failure.retry_after is not None and failure.retry_after <= 2 else None
                await asyncio.sleep(delay or settings.SENTINEL_RETRY_BACKOFF * (2**attempt) * (0.5 + random.random()))
                continue
            breaker.success()
            attempts.route = route
            return result
    raise to_gateway_error(last)
