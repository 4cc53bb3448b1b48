"""The one place that hands out Redis clients.

Every Redis key Sentinel writes goes through :func:`rkey`, so the test-suite can give each test run
its own prefix (``SENTINEL_REDIS_PREFIX``) and tenant data always starts with ``t:{tenant_id}:``.
With no ``REDIS_URL`` (the embedded default) the clients are ``None`` and callers use their
in-process fallback.
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

_sync_client: redis.Redis | None = None
_async_clients: dict[int, aioredis.Redis] = {}


def enabled() -> bool:
    return bool(settings.REDIS_URL)


_prefix: str | None = None  # settings.SENTINEL_REDIS_PREFIX, read once (rkey runs many times per request)


@receiver(setting_changed)
def _forget_prefix(*, setting: str, **kwargs) -> None:
    global _prefix
    if setting == "SENTINEL_REDIS_PREFIX":
        _prefix = None


def rkey(*parts: object) -> str:
    global _prefix
    if _prefix is None:
        _prefix = settings.SENTINEL_REDIS_PREFIX
    return _prefix + ":".join(map(str, parts))


def tenant_key(tenant_id: int, *parts: object) -> str:
    return rkey("t", tenant_id, *parts)


def reset_clients() -> None:
    """Forget the cached clients, so the next call connects to the current ``settings.REDIS_URL``
    (tests that point it at a closed port to simulate Redis being down)."""
    global _sync_client
    _sync_client = None
    _async_clients.clear()


def sync_client() -> redis.Redis | None:
    global _sync_client
    if not settings.REDIS_URL:
        return None
    if _sync_client is None:
        _sync_client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2, health_check_interval=30
        )
    return _sync_client


def async_client() -> aioredis.Redis | None:
    """An asyncio client bound to the running event loop (one pool per loop)."""
    if not settings.REDIS_URL:
        return None
    import asyncio

    loop_id = id(asyncio.get_running_loop())
    client = _async_clients.get(loop_id)
    if client is None:
        client = aioredis.Redis.from_url(
            settings.REDIS_URL,
            socket_connect_timeout=1,
            socket_timeout=2,
            max_connections=256,
            health_check_interval=30,
        )
        _async_clients[loop_id] = client
    return client
