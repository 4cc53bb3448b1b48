"""The catalog as the hot path sees it: an immutable in-process snapshot, no SQL per request.

Reloaded when any process publishes a catalog change (``sentinel_site.bus`` topic ``catalog``)
and at least every ``REFRESH_SECONDS`` as a safety net.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from gateway.models import Model, Route
from sentinel_site import bus
from sentinel_site.db import adb

REFRESH_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    id: int
    name: str
    kind: str
    base_url: str
    api_key_env: str
    encrypted_api_key: str


@dataclass(frozen=True, slots=True)
class RouteInfo:
    id: int
    provider: ProviderInfo
    upstream_model: str
    priority: int
    weight: int
    timeout_seconds: float | None

    @property
    def label(self) -> str:
        return f"{self.provider.name}/{self.upstream_model}"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: int
    name: str
    kind: str
    max_output_tokens: int
    routes: tuple[RouteInfo, ...] = field(default_factory=tuple)
    # Providers of routes left out because this deployment has no credentials for them.
    unconfigured: tuple[str, ...] = ()


def has_credentials(provider: ProviderInfo) -> bool:
    """A route is served only when its provider can authenticate: an encrypted key is stored, the
    named environment variable is set, or it needs none (mock, keyless OpenAI-compatible servers).
    So ``/v1/models`` lists only callable models and a missing key never trips a circuit breaker."""
    if provider.encrypted_api_key or not provider.api_key_env:
        return True
    return bool(os.environ.get(provider.api_key_env))


@dataclass(frozen=True, slots=True)
class CatalogSnapshot:
    models: dict[str, ModelInfo]
    loaded_at: float


_snapshot: CatalogSnapshot | None = None


def _load() -> CatalogSnapshot:
    routes: dict[int, list[RouteInfo]] = {}
    for r in Route.objects.filter(enabled=True, provider__enabled=True).select_related("provider"):
        p = r.provider
        info = ProviderInfo(p.pk, p.name, p.kind, p.base_url, p.api_key_env, p.encrypted_api_key)
        routes.setdefault(r.model_id, []).append(
            RouteInfo(r.pk, info, r.upstream_model, r.priority, r.weight, r.timeout_seconds)
        )
    models = {}
    for m in Model.objects.filter(enabled=True):
        candidates = routes.get(m.pk, [])
        usable = [r for r in candidates if has_credentials(r.provider)]
        ordered = tuple(sorted(usable, key=lambda r: (r.priority, -r.weight, r.id)))
        missing = tuple(sorted({r.provider.name for r in candidates if r not in usable}))
        models[m.name] = ModelInfo(m.pk, m.name, m.kind, m.max_output_tokens, ordered, missing)
    return CatalogSnapshot(models=models, loaded_at=time.monotonic())


async def snapshot() -> CatalogSnapshot:
    global _snapshot
    current = _snapshot
    if current is None or time.monotonic() - current.loaded_at > REFRESH_SECONDS:
        current = _snapshot = await adb(_load)
    return current


def invalidate(_: str = "*") -> None:
    global _snapshot
    _snapshot = None


bus.register("catalog", invalidate)
