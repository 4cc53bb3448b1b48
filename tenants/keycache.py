"""Authenticating a Sentinel key with no SQL for a hot key.

Each process keeps the keys it has seen for ``SENTINEL_KEY_CACHE_SECONDS``. Any change to a key or
its tenant (revoke, rotate, expiry, models, limits, suspension) is published on a Redis channel and
every process drops its copy at once, so the change is in force everywhere well within a second.
While the subscription is down, cached entries live at most one second (see sentinel_site.bus).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from sentinel_site import bus
from sentinel_site import redis as sredis
from sentinel_site.db import adb
from tenants import keys
from tenants.models import ApiKey

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Entry:
    key: ApiKey | None
    expires: float


_cache: dict[str, _Entry] = {}


class KeyRejected(Exception):
    """The token does not authenticate; ``reason`` is safe to show (never echoes the token)."""

    def __init__(self, reason: str, *, status: int = 401, code: str = "invalid_api_key") -> None:
        super().__init__(reason)
        self.status = status
        self.code = code


def forget(target: str) -> None:
    """Drop cached keys: a public id, ``tenant:<id>`` for all keys of a tenant, or ``*``."""
    if target == "*":
        _cache.clear()
    elif target.startswith("tenant:"):
        tenant_id = int(target.split(":", 1)[1])
        for public_id in [p for p, e in _cache.items() if e.key is not None and e.key.tenant_id == tenant_id]:
            _cache.pop(public_id, None)
    else:
        _cache.pop(target, None)


def publish_invalidation(target: str) -> None:
    bus.publish("keys", target)


bus.register("keys", forget)


def _ttl() -> float:
    if sredis.enabled() and not bus.subscribed:
        return min(1.0, settings.SENTINEL_KEY_CACHE_SECONDS)
    return settings.SENTINEL_KEY_CACHE_SECONDS


def _fetch(public_id: str) -> ApiKey | None:
    return ApiKey.objects.select_related("tenant").filter(public_id=public_id).first()


async def api_key_for_token(token: str) -> ApiKey:
    """The active key for ``token`` with its tenant loaded, or :class:`KeyRejected`."""
    public_id = keys.parse(token)
    if public_id is None:
        raise KeyRejected("Incorrect API key provided. Sentinel keys look like sk-sntl-….")
    bus.ensure_listener()
    now = time.monotonic()
    entry = _cache.get(public_id)
    if entry is None or entry.expires < now:
        key = await adb(_fetch, public_id)
        entry = _Entry(key=key, expires=now + _ttl())
        _cache[public_id] = entry
    key = entry.key
    if key is None:
        raise KeyRejected("Incorrect API key provided.")
    wall = timezone.now()
    if not keys.matches(token, key.secret_hash) and not (
        key.previous_valid_until is not None
        and key.previous_valid_until > wall
        and keys.matches(token, key.previous_secret_hash)
    ):
        raise KeyRejected("Incorrect API key provided.")
    if key.revoked_at is not None and key.revoked_at <= wall:
        raise KeyRejected("This API key has been revoked.", code="revoked_api_key")
    if key.expires_at is not None and key.expires_at <= wall:
        raise KeyRejected("This API key has expired.", code="expired_api_key")
    if not key.tenant.is_active:
        raise KeyRejected("This tenant is suspended; contact your administrator.", status=403, code="tenant_suspended")
    return key
