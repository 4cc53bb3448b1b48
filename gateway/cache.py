"""Response cache: exact match on a normalised request, per tenant, in Redis.

Key
    ``t:{tenant_id}:cache:{endpoint}:{sha256}`` of the request body with the fields that do not
    change the answer removed (``stream``, ``stream_options``, ``user``, ``metadata``, ``store``,
    ``service_tier``, ``prompt_cache_key``, ``safety_identifier``, top-level nulls), keys sorted
    and integral floats written as integers (``temperature: 1.0`` == ``1``). The model is part
    of the body, so of the key. The tenant id is in the key name itself: tenants never share an
    entry, and :func:`lookup`/:func:`store` refuse a key that is not the tenant's.

Value
    The OpenAI-shape non-stream response (``chat.completion``), JSON, with the tenant's TTL; a
    stream request is answered from it by replaying it as SSE (the pipeline does that).

Single flight
    Identical concurrent misses: the first caller takes ``<key>:lock`` (``SET NX PX``, TTL =
    ``wait_seconds``, so a leader that died frees it by itself) and calls upstream;
    :func:`fetch_or_lead` looks the entry up and takes the lock in one round trip. The others
    poll the lock (5 ms, doubling to 50 ms) until the leader stored the answer and released it,
    then read the cache. A follower that waited ``wait_seconds`` in vain goes upstream itself.
    The leader's :func:`store` writes the answer and releases the lock in one round trip.

Failure policy: the cache is an optimisation. Any Redis error is a miss (``lookup`` -> None),
a skipped write, or "you lead" (single flight), within the hot path's short Redis timeout (see
``gateway.limits.hot_call``); a write is retried with longer deadlines
(``gateway.limits.hot_call_patient``), so a busy process does not lose hits. Without ``REDIS_URL`` (the embedded default, one process) entries
and flights live in process memory.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gateway.limits import RedisUnavailable, Script, hot_call, hot_call_patient
from sentinel_site import redis as sredis

log = logging.getLogger(__name__)

NON_SEMANTIC_FIELDS = frozenset(
    {"stream", "stream_options", "user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier"}
)
MAX_ENTRY_BYTES = 2 * 1024 * 1024  # larger answers are not cached
LOCAL_MAX_ENTRIES = 1000
UNLOCK = Script("unlock")
STORE_UNLOCK = Script("store_unlock")
LOOKUP_OR_LOCK = Script("lookup_or_lock")
# The lock this task leads (fetch_or_lead): its store() releases it in the same round trip.
_leading: contextvars.ContextVar[dict | None] = contextvars.ContextVar("cache_leading", default=None)


def _normal(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def cache_key(*, tenant_id: int, endpoint: str, body: dict) -> str:
    """The Redis key of ``body``'s answer for this tenant (see the module docstring)."""
    normal = {k: _normal(v) for k, v in body.items() if k not in NON_SEMANTIC_FIELDS and v is not None}
    blob = json.dumps(normal, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    digest = hashlib.sha256(f"{endpoint}\n{blob}".encode()).hexdigest()
    return sredis.tenant_key(tenant_id, "cache", endpoint, digest)


def _check(tenant_id: int, key: str) -> None:
    if not key.startswith(sredis.tenant_key(tenant_id, "cache", "")):
        raise ValueError("cache key does not belong to this tenant")


async def lookup(*, tenant_id: int, key: str) -> dict | None:
    """The cached response, or None (also when Redis is unreachable or the entry is corrupt)."""
    _check(tenant_id, key)
    if not sredis.enabled():
        raw = _local.get(key)
    else:
        try:
            raw = await hot_call(lambda client: client.get(key))
        except RedisUnavailable:
            return None
    return _decode(raw)


def _decode(raw: str | bytes | None) -> dict | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        log.warning("corrupt response cache entry ignored")
        return None
    return value if isinstance(value, dict) else None


async def store(*, tenant_id: int, key: str, response: dict, ttl: int) -> None:
    """Cache ``response`` for ``ttl`` seconds; never raises (a failed write is only a lost hit)."""
    _check(tenant_id, key)
    if ttl <= 0:
        return
    raw = json.dumps(response, separators=(",", ":"), ensure_ascii=False)
    if len(raw) > MAX_ENTRY_BYTES:
        return
    if not sredis.enabled():
        _local.set(key, raw, ttl)
        return
    lead = _leading.get()
    # Patient (hot_call_patient's second and third chances): under load the short deadline fires
    # because this process is busy, not Redis, and a skipped write is a lost hit for everyone.
    # Its callers wait for the settlement beside it, which is as patient.
    try:
        if lead is not None and lead["key"] == key and not lead["released"]:
            await hot_call_patient(
                lambda client: STORE_UNLOCK(client, [key, lead["lock"]], [raw.encode(), int(ttl), lead["token"]])
            )
            lead["released"] = True
        else:
            await hot_call_patient(lambda client: client.set(key, raw.encode(), ex=int(ttl)))
    except RedisUnavailable:
        return


@asynccontextmanager
async def fetch_or_lead(*, tenant_id: int, key: str, wait_seconds: float = 30) -> AsyncIterator[dict | None]:
    """:func:`lookup` and the single-flight lock in one round trip. Yields the cached answer, or None:
    then the caller calls upstream and stores the answer (:func:`store`). On a miss the first caller
    leads (its store releases the lock); an identical request meanwhile waits for the leader and
    yields its stored answer (None if the leader failed: it goes upstream itself). Fails open:
    Redis unreachable -> None, without a lock."""
    _check(tenant_id, key)
    if not sredis.enabled():
        cached = _decode(_local.get(key))
        if cached is not None:
            yield cached
            return
        async with _local_flight(key, wait_seconds) as leader:
            yield None if leader else _decode(_local.get(key))
        return
    lock = f"{key}:lock"
    token = secrets.token_hex(12)
    try:
        reply = await hot_call(lambda client: LOOKUP_OR_LOCK(client, [key, lock], [token, _lock_ttl_ms(wait_seconds)]))
    except RedisUnavailable:
        yield None
        return
    if reply[0] == 1:
        yield _decode(reply[1])  # a corrupt entry is a miss; the answer overwrites it
    elif reply[0] == 2:
        async with _leading_lock(key, lock, token):
            yield None
    elif await _wait_for_leader(lock, wait_seconds):
        yield await lookup(tenant_id=tenant_id, key=key)
    else:
        yield None


def _lock_ttl_ms(wait_seconds: float) -> int:
    return max(1, int(wait_seconds * 1000))


@asynccontextmanager
async def _leading_lock(key: str, lock: str, token: str) -> AsyncIterator[None]:
    """While the caller leads: its :func:`store` of ``key`` also releases ``lock``; released at the
    latest on leaving (a leader that failed lets its followers go upstream themselves)."""
    lead = {"key": key, "lock": lock, "token": token, "released": not token}
    reset = _leading.set(lead)
    try:
        yield
    finally:
        _leading.reset(reset)
        if not lead["released"]:
            await asyncio.shield(_release(lock, token))


async def _release(lock: str, token: str) -> None:
    try:
        await hot_call(lambda client: UNLOCK(client, [lock], [token]))
    except RedisUnavailable:
        return  # the lock's TTL frees it


async def _wait_for_leader(lock: str, wait_seconds: float) -> bool:
    """True once the lock is gone (the leader stored and released, or died and it expired);
    False if Redis failed meanwhile (the caller then leads). A wait past ``wait_seconds`` is
    treated like a release: the caller looks up, misses, and goes upstream itself."""
    deadline = time.monotonic() + wait_seconds
    delay = 0.005
    while time.monotonic() < deadline:
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        try:
            if not await hot_call(lambda client: client.exists(lock)):
                return True
        except RedisUnavailable:
            return False
        delay = min(delay * 2, 0.05)
    return True


# --------------------------------------------------------------------------- embedded default
class _LocalCache:
    def __init__(self) -> None:
        self.entries: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def get(self, key: str) -> str | None:
        entry = self.entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            self.entries.pop(key, None)
            return None
        self.entries.move_to_end(key)
        return entry[1]

    def set(self, key: str, raw: str, ttl: int) -> None:
        self.entries[key] = (time.monotonic() + ttl, raw)
        self.entries.move_to_end(key)
        while len(self.entries) > LOCAL_MAX_ENTRIES:
            self.entries.popitem(last=False)


_local = _LocalCache()
_local_flights: dict[str, asyncio.Future] = {}


@asynccontextmanager
async def _local_flight(key: str, wait_seconds: float) -> AsyncIterator[bool]:
    flight = _local_flights.get(key)
    if flight is not None and flight.get_loop() is asyncio.get_running_loop() and not flight.done():
        try:
            await asyncio.wait_for(asyncio.shield(flight), wait_seconds)
        except TimeoutError:
            pass
        yield False
        return
    flight = asyncio.get_running_loop().create_future()
    _local_flights[key] = flight
    try:
        yield True
    finally:
        flight.set_result(None)
        if _local_flights.get(key) is flight:
            del _local_flights[key]
