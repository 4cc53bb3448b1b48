"""Rate limits and budget reservations: one atomic Redis round trip per request.

Rate limits -- GCRA
    Every limit (RPM and TPM, per key and per tenant) is a GCRA (generic cell rate algorithm)
    meter: a continuously refilling bucket of ``limit`` units per minute, so a full minute's quota
    may be used in a burst and then refills at ``limit / 60`` per second. The state is one number
    per limit, the *theoretical arrival time* (TAT, µs, on the Redis server clock so every process
    agrees); a request of ``cost`` units (1 request, or its estimated tokens) is admitted when
    ``max(TAT, now) + cost * 60 s / limit - 60 s <= now``. O(1) in time and memory, exact across
    processes because every check-and-update runs inside one Lua script. Limits: the key's
    ``rpm``/``tpm``, else the tenant's ``default_rpm``/``default_tpm``; the tenant-wide
    ``rpm``/``tpm``; ``None`` = unlimited, ``0`` = nothing allowed. ``settle`` corrects TPM by
    (actual - estimated) tokens: a refund lets the next request in earlier, an overrun pushes it back.

Budgets -- reservation
    A budget (key ``budget_usd``/``budget_period``, tenant ``budget_usd``/``budget_period``; periods
    day | month | total on the tenant's calendar, ``Tenant.timezone``) is a Redis hash per period,
    ``t:{tenant}:budget:{key:<id>|tenant}:{d20250131|m202501|total}`` = {spent, reserved,
    r:<reservation id>: amount}. Admission reserves the request's worst-case cost against every
    applicable budget when ``spent + reserved + cost <= budget`` for all of them (else nothing is
    written); ``settle`` consumes the reservation field, releases it and adds the actual cost to
    ``spent`` -- idempotently, since the field is consumed. The checks, rate limits included, run
    in the same script: one EVALSHA per request.

    Redis holds the live truth (the ledger is written asynchronously); PostgreSQL is the record. A
    budget hash that does not exist (cold start, Redis restart or flush, a new period) is rebuilt
    from the ledger: the script answers "seed", the caller sums ``UsageEvent.cost_micros`` for the
    period, and the retried script writes it only if the hash is still missing -- so a hot path
    runs no SQL. Requests in flight when Redis lost its data settle into nothing (their
    reservation is gone) and their events reach the ledger; a rebuild that happens before the
    ledger drained misses them, by at most the cost in flight.

    Each reservation has a deadline (``SENTINEL_RESERVATION_TTL``, by default the upstream total
    timeout + 60 s) in the index zset ``reservations`` (member ``<budget key>|<id>``).
    ``gateway.tasks.reconcile_reservations`` releases those past their deadline (a process died
    between admit and settle) and leaves a marker for an hour so that a late settle still records
    its spend exactly once.

Redis unreachable -- the policy
    Hot-path calls have no retries and a deadline of ``SENTINEL_LIMITS_REDIS_TIMEOUT`` (0.25 s). A
    refused or broken connection marks Redis down for ``SENTINEL_REDIS_DOWN_BACKOFF`` (1 s), so
    requests do not each wait for it. A timeout is ambiguous (a burst can keep this process's event
    loop from reading a reply in time), so the script is tried again with max(1 s, 4x) -- a
    repeated admission recognises its own reservation -- and, if that deadline itself fired late
    or many calls were queued ahead of it (this process, not Redis, is the bottleneck), once more
    with 5 s; only then is Redis marked down.
    Meanwhile:
      * rate limits fail open when ``SENTINEL_RATE_LIMIT_FAIL_OPEN`` (the default); otherwise the
        request gets 429 ``rate_limiter_unavailable`` with ``Retry-After: 1``;
      * budgets fall back to PostgreSQL: max(ledger sum for the period, the budget as this process
        last saw it in Redis within 5 minutes) + what this process admitted since and the ledger
        may not show yet + this request's worst case <= budget, else 429 ``insufficient_quota``;
        PostgreSQL also unreachable: 503 ``limits_unavailable`` (never admitted without a check,
        never a 500). Processes do not see each other's fallback admissions, so the overspend
        bound while Redis is down is the other processes' cost in flight.
      * settlements that fail are kept in process memory and replayed when Redis answers again;
        spend admitted by the fallback is added to the budgets that were in Redis before it (a
        budget rebuilt from the ledger after the spend, ``seeded_at``, already counts it).

Without ``REDIS_URL`` (the embedded default, one process) the same scripts' logic runs in process
memory, with the same rebuild from the ledger.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import math
import secrets
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Sum
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from billing.models import UsageEvent
from billing.pricing import Quote, micros_to_usd, usd_to_micros
from gateway.errors import BudgetExceeded, GatewayError, RateLimited
from sentinel_site import redis as sredis
from sentinel_site.db import adb
from sentinel_site.hotredis import HotRedis
from tenants.models import ApiKey, BudgetPeriod, Tenant

log = logging.getLogger(__name__)

PERIOD_US = 60_000_000
DEFAULT_OUTPUT_TOKENS = 4096
TOTAL_BUDGET_TTL = 35 * 86400  # a "total" budget idle this long is rebuilt from the ledger
PERIOD_GRACE = 2 * 86400  # a day/month budget hash outlives its period by this much
EXPIRED_MARKER_US = 3600 * 1_000_000  # how long a reconciled reservation still accepts its settle
LEDGER_LAG_SECONDS = 30.0  # fallback: how long settled spend is counted locally before the ledger shows it
FALLBACK_LEDGER_MAX_AGE = 1.0  # fallback: a ledger sum is reused this long (this process's own spend is held)
_LUA_DIR = Path(__file__).resolve().parent / "lua"


class LimitsUnavailable(GatewayError):
    """Neither Redis nor PostgreSQL could say whether a budget has room: refuse, retry shortly."""

    status = 503
    type = "api_error"
    code = "limits_unavailable"


class RedisUnavailable(Exception):
    """Redis did not answer in time (or at all); the caller applies the documented fallback."""


class RedisSlow(RedisUnavailable):
    """No answer within the timeout. Ambiguous -- Redis may be hung, or this process's event loop
    was too busy to read the reply in time -- so it does not mark Redis down by itself.
    ``overloaded``: the deadline itself fired late, i.e. the loop is the bottleneck."""

    def __init__(self, message: str, *, overloaded: bool = False) -> None:
        super().__init__(message)
        self.overloaded = overloaded


@dataclass(slots=True)
class Admission:
    reservation_id: str
    reserved_micros: int
    headers: dict[str, str]
    budgets: list[str]
    tokens: int = 0  # the estimate counted against TPM; settle corrects it to the actual count
    token_limits: list[tuple[str, int]] = field(default_factory=list)  # (TPM key, limit) to correct
    degraded: bool = False  # admitted by the PostgreSQL fallback while Redis was unreachable


# --------------------------------------------------------------------------- settings
def _redis_timeout() -> float:
    return settings.SENTINEL_LIMITS_REDIS_TIMEOUT


def _down_backoff() -> float:
    return settings.SENTINEL_REDIS_DOWN_BACKOFF


def _reservation_lifetime_us() -> int:
    seconds = settings.SENTINEL_RESERVATION_TTL or settings.SENTINEL_UPSTREAM_TOTAL_TIMEOUT + 60
    return int(seconds * 1_000_000)


# --------------------------------------------------------------------------- fast-failing Redis
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, HotRedis] = weakref.WeakKeyDictionary()
_down_until = 0.0
_in_flight = 0  # hot-path Redis calls under way in this process
BUSY_IN_FLIGHT = 32  # with this many ahead of it, a timeout is more likely queueing than Redis


def hot_client() -> HotRedis | None:
    """This event loop's client for the hot path (None without Redis): the lean pipelined client of
    :mod:`sentinel_site.hotredis`, no retries, every call bounded by :func:`hot_call`. Separate
    from ``sentinel_site.redis.async_client``, whose 2 s timeouts and retries are right for the
    console, not for a request that must decide in milliseconds."""
    if not sredis.enabled():
        return None
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.url != settings.REDIS_URL:
        # The connection is shared by the process's requests: a connect is given at least a second,
        # so a burst that keeps the event loop busy does not make it fail for everyone.
        client = HotRedis(settings.REDIS_URL, connect_timeout=max(1.0, _redis_timeout()))
        _clients[loop] = client
    return client


def _slow_timeout() -> float:
    """The second chance after a first timeout (see :func:`next_timeout`)."""
    return max(1.0, 4 * _redis_timeout())


def redis_marked_down() -> bool:
    return time.monotonic() < _down_until


def mark_redis_down(reason: str = "") -> None:
    global _down_until
    if not redis_marked_down():
        log.warning("Redis unreachable (%s): limits and cache use their fallbacks for %.1fs", reason, _down_backoff())
    _down_until = time.monotonic() + _down_backoff()


def mark_redis_up() -> None:
    global _down_until
    _down_until = 0.0


async def hot_call(fn: Callable[[HotRedis], Awaitable[Any]], *, timeout: float | None = None) -> Any:
    """Run ``fn(client)`` within ``timeout`` (``SENTINEL_LIMITS_REDIS_TIMEOUT``). A refused or
    broken connection marks Redis down for the back-off period and raises
    :class:`RedisUnavailable`; no answer in time raises :class:`RedisSlow` (not marked down)."""
    client = hot_client()
    if client is None or redis_marked_down():
        raise RedisUnavailable("Redis is unavailable")
    global _in_flight
    deadline = timeout or _redis_timeout()
    loop = asyncio.get_running_loop()
    started = loop.time()
    queued = _in_flight
    _in_flight += 1
    try:
        async with asyncio.timeout(deadline):
            return await fn(client)
    except (TimeoutError, RedisTimeoutError) as exc:
        late = loop.time() - started - deadline
        busy = queued >= BUSY_IN_FLIGHT or late > max(0.05, deadline / 5)
        raise RedisSlow(f"no answer within {deadline:.2f}s", overloaded=busy) from exc
    except (RedisError, OSError) as exc:
        if not isinstance(exc, RedisConnectionError | OSError):
            log.error("Redis refused a hot-path call: %s", exc)
        reason = f"{type(exc).__name__}: {exc}"
        mark_redis_down(reason)
        raise RedisUnavailable(reason) from exc
    finally:
        _in_flight -= 1


PATIENT_TIMEOUT = 5.0


def next_timeout(slow: RedisSlow, tried: int) -> float | None:
    """After ``tried`` timed-out attempts, the deadline of the next one, or None: give up and mark
    Redis down. A first timeout gets a second chance of max(1 s, 4x); when this process is the
    bottleneck (the deadline fired late, or many calls were queued ahead) a third of
    ``PATIENT_TIMEOUT`` -- waiting is then back-pressure, where a false "down" would send budgets
    to the weaker fallback."""
    if tried == 1:
        return _slow_timeout()
    if tried == 2 and slow.overloaded:
        return PATIENT_TIMEOUT
    mark_redis_down(f"{slow} ({tried} attempts)")
    return None


async def hot_call_patient(fn: Callable[[HotRedis], Awaitable[Any]]) -> Any:
    """:func:`hot_call` with the retries of :func:`next_timeout`; ``fn`` must be safe to repeat."""
    timeout: float | None = None
    tried = 0
    while True:
        try:
            return await hot_call(fn, timeout=timeout)
        except RedisSlow as slow:
            tried += 1
            timeout = next_timeout(slow, tried)
            if timeout is None:
                raise


class Script:
    """A Lua script from gateway/lua, run by EVALSHA (EVAL once after a Redis restart)."""

    def __init__(self, name: str) -> None:
        self.source = (_LUA_DIR / f"{name}.lua").read_text()
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1

    async def __call__(self, client: HotRedis, keys: list[str], args: list[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)

    def sync(self, client: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return client.eval(self.source, len(keys), *keys, *args)


ADMIT = Script("admit")
SETTLE = Script("settle")
RECONCILE = Script("reconcile")
SPEND = Script("spend")


def reservations_index_key() -> str:
    return sredis.rkey("gateway", "reservations")


# --------------------------------------------------------------------------- what applies to a request
@dataclass(frozen=True, slots=True)
class RateLimit:
    scope: str  # "key" | "tenant"
    unit: str  # "requests" | "tokens"
    redis_key: str
    limit: int
    cost: int


@dataclass(frozen=True, slots=True)
class Budget:
    scope: str  # "key" | "tenant"
    redis_key: str
    limit_micros: int
    period: str
    tenant_id: int
    api_key_id: int | None
    start: datetime | None  # UTC bounds of the period on the tenant's calendar; None for "total"
    end: datetime | None
    ttl_seconds: int


def micros_for_budget(usd: Decimal | None) -> int | None:
    return None if usd is None else usd_to_micros(usd)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def budget_period_bounds(*, period: str, tz_name: str, at: datetime) -> tuple[str, datetime | None, datetime | None]:
    """(period id, start, end) of the budget period containing ``at`` on the tenant's calendar;
    start/end are aware UTC, ``None`` for a total budget."""
    if period == BudgetPeriod.TOTAL:
        return "total", None, None
    tz = _zone(tz_name)
    local = at.astimezone(tz)
    if period == BudgetPeriod.DAY:
        start = datetime(local.year, local.month, local.day, tzinfo=tz)
        nxt = start.date() + timedelta(days=1)
        end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)
        period_id = f"d{start:%Y%m%d}"
    else:
        start = datetime(local.year, local.month, 1, tzinfo=tz)
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        end = datetime(year, month, 1, tzinfo=tz)
        period_id = f"m{start:%Y%m}"
    return period_id, start.astimezone(UTC), end.astimezone(UTC)


@functools.lru_cache(maxsize=4096)
def _bounds_in_quarter_hour(period: str, tz_name: str, quarter: int) -> tuple[str, datetime | None, datetime | None]:
    # Every UTC offset in use is a multiple of 15 minutes, so no period starts inside a quarter hour.
    return budget_period_bounds(period=period, tz_name=tz_name, at=datetime.fromtimestamp(quarter * 900, UTC))


def applicable_rate_limits(*, key: ApiKey, tokens: int) -> list[RateLimit]:
    tenant: Tenant = key.tenant
    candidates = (
        ("key", "requests", key.rpm if key.rpm is not None else tenant.default_rpm, 1, ("key", key.pk, "rpm")),
        ("key", "tokens", key.tpm if key.tpm is not None else tenant.default_tpm, tokens, ("key", key.pk, "tpm")),
        ("tenant", "requests", tenant.rpm, 1, ("tenant", "rpm")),
        ("tenant", "tokens", tenant.tpm, tokens, ("tenant", "tpm")),
    )
    return [
        RateLimit(scope, unit, sredis.tenant_key(tenant.pk, "rl", *parts), int(limit), max(0, int(cost)))
        for scope, unit, limit, cost, parts in candidates
        if limit is not None
    ]


def applicable_budgets(*, key: ApiKey, at: datetime) -> list[Budget]:
    tenant: Tenant = key.tenant
    out = []
    for scope, usd, period, parts, key_id in (
        ("key", key.budget_usd, key.budget_period, ("key", key.pk), key.pk),
        ("tenant", tenant.budget_usd, tenant.budget_period, ("tenant",), None),
    ):
        if usd is None:
            continue
        period_id, start, end = _bounds_in_quarter_hour(period, tenant.timezone, int(at.timestamp()) // 900)
        ttl = TOTAL_BUDGET_TTL if end is None else int((end - at).total_seconds()) + PERIOD_GRACE
        out.append(
            Budget(
                scope=scope,
                redis_key=sredis.tenant_key(tenant.pk, "budget", *parts, period_id),
                limit_micros=usd_to_micros(usd),
                period=period,
                tenant_id=tenant.pk,
                api_key_id=key_id,
                start=start,
                end=end,
                ttl_seconds=max(ttl, 60),
            )
        )
    return out


# --------------------------------------------------------------------------- estimates
def estimate_prompt_tokens(messages: list[dict]) -> int:
    """A deliberately generous token count for reservations (UTF-8 bytes / 3, + framing per message):
    over-reserving only holds budget for the request's duration, under-reserving lets it overspend."""
    total = 3
    for message in messages:
        total += 4
        content = message.get("content")
        if isinstance(content, str):
            total += math.ceil(len(content.encode()) / 3)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    total += math.ceil(len(part["text"].encode()) / 3)
                elif isinstance(part, dict):
                    total += 85  # an image or other attachment at its smallest billed size
    return total


def estimate_reserve_micros(
    quote: Quote, prompt_tokens: int, max_tokens: int | None, *, model_cap: int | None = None
) -> int:
    """Worst-case cost of a request: every prompt token at the input price and the most output the
    request can produce (``max_tokens``, capped by the model's limit; the cap when unset) at the
    output price, with the tenant's markup or discount."""
    if max_tokens is not None and model_cap is not None:
        output = min(max_tokens, model_cap)
    else:
        output = max_tokens if max_tokens is not None else (model_cap or DEFAULT_OUTPUT_TOKENS)
    return quote.cost_micros(prompt_tokens=max(0, prompt_tokens), completion_tokens=max(0, output))


# --------------------------------------------------------------------------- headers and denials
def format_duration(us: int | float) -> str:
    """OpenAI's reset format: ``120ms``, ``1.5s``, ``6m0s``."""
    ms = max(0, math.ceil(us / 1000))
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest_ms = divmod(ms, 60_000)
    seconds = f"{rest_ms / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


def rate_limit_headers(limits: list[RateLimit], states: list[tuple[int, int]]) -> dict[str, str]:
    """x-ratelimit-* for the tightest limit of each unit (fewest remaining, then smallest)."""
    headers: dict[str, str] = {}
    for unit in ("requests", "tokens"):
        tightest = None
        for limit, (remaining, reset_us) in zip(limits, states, strict=True):
            if limit.unit != unit:
                continue
            candidate = (max(0, min(int(remaining), limit.limit)), limit.limit, int(reset_us))
            if tightest is None or candidate[:2] < tightest[:2]:
                tightest = candidate
        if tightest is not None:
            headers[f"x-ratelimit-limit-{unit}"] = str(tightest[1])
            headers[f"x-ratelimit-remaining-{unit}"] = str(tightest[0])
            headers[f"x-ratelimit-reset-{unit}"] = format_duration(tightest[2])
    return headers


_SCOPE = {"key": "this API key", "tenant": "this tenant"}
_UNIT = {"requests": "requests per minute (RPM)", "tokens": "tokens per minute (TPM)"}
_PERIOD = {"day": "daily", "month": "monthly", "total": "total"}


def _denial(exc: RateLimited | BudgetExceeded, scope: str) -> RateLimited | BudgetExceeded:
    exc.scope = scope  # type: ignore[union-attr] - "key" | "tenant", for the metrics label
    return exc


def _refuse_impossible(limits: list[RateLimit]) -> None:
    for limit in limits:
        if limit.limit == 0:
            raise _denial(
                RateLimited(
                    f"Rate limit of {_SCOPE[limit.scope]} on {_UNIT[limit.unit]} is 0: no requests are allowed.",
                    headers={"x-should-retry": "false"},
                ),
                limit.scope,
            )
        if limit.cost > limit.limit:
            raise _denial(
                RateLimited(
                    f"Request too large for {_SCOPE[limit.scope]}: it needs up to {limit.cost} tokens but the "
                    f"limit is {limit.limit} {_UNIT[limit.unit]}. Send a shorter prompt or a smaller max_tokens.",
                    code="request_too_large",
                    headers={"x-should-retry": "false"},
                ),
                limit.scope,
            )


def _rate_limited(limits: list[RateLimit], index: int, retry_us: int, states: list[tuple[int, int]]) -> RateLimited:
    limit = limits[index]
    headers = rate_limit_headers(limits, states)
    headers["retry-after"] = str(max(1, math.ceil(retry_us / 1_000_000)))
    exc = RateLimited(
        f"Rate limit reached for {_SCOPE[limit.scope]} on {_UNIT[limit.unit]}: limit {limit.limit}, "
        f"requested {limit.cost}. Please try again in {format_duration(retry_us)}.",
        headers=headers,
    )
    return _denial(exc, limit.scope)  # type: ignore[return-value]


def _budget_exceeded(budget: Budget, reserve_micros: int) -> BudgetExceeded:
    who = "This API key" if budget.scope == "key" else "This tenant"
    exc = BudgetExceeded(
        f"{who} has reached its {_PERIOD.get(budget.period, budget.period)} budget of "
        f"${micros_to_usd(budget.limit_micros)} (this request may cost up to ${micros_to_usd(reserve_micros)}). "
        "Ask an administrator to raise the budget, or wait for the next period.",
        headers={"x-should-retry": "false"},
    )
    return _denial(exc, budget.scope)  # type: ignore[return-value]


def _pairs(values: list[Any]) -> list[tuple[int, int]]:
    return [(int(values[i]), int(values[i + 1])) for i in range(0, len(values), 2)]


# --------------------------------------------------------------------------- the ledger
async def ledger_spent_micros(budget: Budget) -> int:
    """Spend recorded in PostgreSQL for the budget's period (tenant, or one key of it)."""
    events = UsageEvent.objects.filter(tenant_id=budget.tenant_id)
    if budget.api_key_id is not None:
        events = events.filter(api_key_id=budget.api_key_id)
    if budget.start is not None:
        events = events.filter(created_at__gte=budget.start, created_at__lt=budget.end)
    try:
        row = await adb(events.aggregate, total=Sum("cost_micros"))
    except DatabaseError as exc:
        log.error("budget check impossible: the ledger is unreachable (%s)", type(exc).__name__)
        raise LimitsUnavailable(
            "Budgets cannot be checked right now; please retry shortly.", headers={"retry-after": "1"}
        ) from exc
    return int(row["total"] or 0)


_ledger_cache: dict[str, tuple[float, int]] = {}
_ledger_loads: dict[str, asyncio.Task] = {}


async def _ledger_spent_shared(budget: Budget, *, max_age: float) -> int:
    """``ledger_spent_micros``, one query at a time per budget (concurrent callers share it), and
    within ``max_age`` seconds reused: safe for the fallback because everything this process
    admitted since is counted by ``_Fallback.held``."""
    name = budget.redis_key
    if max_age > 0:
        cached = _ledger_cache.get(name)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
    loop = asyncio.get_running_loop()
    task = _ledger_loads.get(name)
    if task is None or task.get_loop() is not loop:
        task = loop.create_task(ledger_spent_micros(budget))
        _ledger_loads[name] = task
        task.add_done_callback(lambda done: _ledger_loads.pop(name, None) if _ledger_loads.get(name) is done else None)
    value = await asyncio.shield(task)
    if len(_ledger_cache) > 10_000:
        _ledger_cache.clear()
    _ledger_cache[name] = (time.monotonic() + FALLBACK_LEDGER_MAX_AGE, value)
    return value


# --------------------------------------------------------------------------- admit / settle
def _now_us(now: datetime | None) -> str:
    return "" if now is None else str(int(now.timestamp() * 1_000_000))


async def admit(
    *, key: ApiKey, tokens: int, reserve_micros: int, request_id: str, now: datetime | None = None
) -> Admission:
    """Count the request against every rate limit and reserve ``reserve_micros`` against every
    budget of ``key`` and its tenant -- all or nothing, one Redis round trip.

    Raises :class:`RateLimited` (429, Retry-After and x-ratelimit-*), :class:`BudgetExceeded` (429,
    insufficient_quota) or, when neither Redis nor PostgreSQL answers, :class:`LimitsUnavailable`
    (503). A denied request counts and reserves nothing. Each admission must be settled once."""
    at = now or timezone.now()
    reserve_micros = max(0, int(reserve_micros))
    limits = applicable_rate_limits(key=key, tokens=tokens)
    _refuse_impossible(limits)
    budgets = applicable_budgets(key=key, at=at)
    token_limits = [(lim.redis_key, lim.limit) for lim in limits if lim.unit == "tokens"]
    if not limits and not budgets:
        return Admission(request_id, reserve_micros, {}, [], tokens=tokens)
    local = not sredis.enabled()
    if not local and redis_marked_down():
        return await _admit_fallback(key, limits, budgets, reserve_micros, request_id, tokens, token_limits)
    keys = [lim.redis_key for lim in limits] + [b.redis_key for b in budgets] + [reservations_index_key()]
    seeds: dict[int, int] = {}
    reservation_id = request_id
    repeated = False  # the previous attempt timed out: it may have run
    timeout: float | None = None
    timeouts = 0
    for _attempt in range(8):
        args: list[Any] = [_now_us(now), reservation_id, reserve_micros, _reservation_lifetime_us()]
        args += [len(limits), len(budgets)]
        for lim in limits:
            args += [lim.limit, lim.cost]
        for i, budget in enumerate(budgets, 1):
            args += [budget.limit_micros, budget.ttl_seconds, seeds.get(i, "")]
        try:
            if local:
                reply = await _local.admit(keys, args)
            else:
                reply = await hot_call(lambda client, a=args: ADMIT(client, keys, a), timeout=timeout)
        except RedisSlow as slow:
            timeouts += 1
            timeout = next_timeout(slow, timeouts)
            if timeout is None:
                return await _admit_fallback(key, limits, budgets, reserve_micros, request_id, tokens, token_limits)
            repeated = True
            continue
        except RedisUnavailable:
            return await _admit_fallback(key, limits, budgets, reserve_micros, request_id, tokens, token_limits)
        code = int(reply[0])
        if code == 0:
            states = _pairs(reply[1 : 1 + 2 * len(limits)])
            _remember(budgets, reply[1 + 2 * len(limits) :])
            _schedule_replay()
            return Admission(
                reservation_id,
                reserve_micros,
                rate_limit_headers(limits, states),
                [b.redis_key for b in budgets],
                tokens=tokens,
                token_limits=token_limits,
            )
        if code == 4 and repeated:
            # Our attempt that timed out did run: the reservation is ours (headers unknown).
            return Admission(
                reservation_id,
                reserve_micros,
                {},
                [b.redis_key for b in budgets],
                tokens=tokens,
                token_limits=token_limits,
            )
        repeated, timeout = False, None
        if code == 1:
            raise _rate_limited(limits, int(reply[1]) - 1, int(reply[2]), _pairs(reply[3:]))
        if code == 2:
            raise _budget_exceeded(budgets[int(reply[1]) - 1], reserve_micros)
        if code == 3:
            missing = [int(i) for i in reply[1]]
            spent = await asyncio.gather(*(_ledger_spent_shared(budgets[i - 1], max_age=0) for i in missing))
            seeds.update(zip(missing, spent, strict=True))
        elif code == 4:
            reservation_id = f"{request_id}.{secrets.token_hex(4)}"
    log.error("admission did not converge (budgets kept disappearing); using the PostgreSQL check")
    return await _admit_fallback(key, limits, budgets, reserve_micros, request_id, tokens, token_limits)


# Budgets as this process last saw them in Redis (spent + reserved, after its own reservation):
# the fallback never assumes less than that, since the ledger lags behind Redis.
SHADOW_MAX_AGE = 300.0
_shadow: dict[str, tuple[float, int]] = {}


def _remember(budgets: list[Budget], totals: list[Any]) -> None:
    if len(_shadow) > 10_000:
        _shadow.clear()
    now = time.monotonic()
    for budget, total in zip(budgets, totals, strict=True):
        _shadow[budget.redis_key] = (now, int(total))


def _last_seen(budget_key: str) -> int:
    seen = _shadow.get(budget_key)
    return seen[1] if seen is not None and time.monotonic() - seen[0] < SHADOW_MAX_AGE else 0


async def settle(*, key: ApiKey, admission: Admission, actual_micros: int, actual_tokens: int) -> None:
    """Replace the reservation by the actual cost (``spent += actual``, ``reserved -= reserved``)
    and correct TPM by ``actual_tokens - admission.tokens``; one round trip. Idempotent, never
    raises: when Redis is unreachable the settlement is replayed once it answers again."""
    actual_micros = max(0, int(actual_micros))
    delta = int(actual_tokens) - admission.tokens
    if admission.degraded:
        _fallback.settle(admission.budgets, admission.reservation_id, actual_micros)
        if admission.budgets and actual_micros and sredis.enabled():
            _replay.append(("spend", admission.budgets, [actual_micros, int(time.time() * 1_000_000)]))
            _schedule_replay()
        return
    token_limits = admission.token_limits if delta else []
    if not admission.budgets and not token_limits:
        return
    keys = [k for k, _ in token_limits] + list(admission.budgets) + [reservations_index_key()]
    args: list[Any] = ["", admission.reservation_id, actual_micros, delta, len(token_limits), len(admission.budgets)]
    args += [limit for _, limit in token_limits]
    if not sredis.enabled():
        await _local.settle(keys, args)
        return
    try:
        await hot_call_patient(lambda client: SETTLE(client, keys, args))
    except RedisUnavailable:
        _replay.append(("settle", keys, args))
        return
    _schedule_replay()


async def _admit_fallback(
    key: ApiKey,
    limits: list[RateLimit],
    budgets: list[Budget],
    reserve_micros: int,
    request_id: str,
    tokens: int,
    token_limits: list[tuple[str, int]],
) -> Admission:
    if limits and not settings.SENTINEL_RATE_LIMIT_FAIL_OPEN:
        raise RateLimited(
            "Rate limiting is temporarily unavailable; please retry shortly.",
            code="rate_limiter_unavailable",
            headers={"retry-after": "1"},
        )
    spent = await asyncio.gather(*(_ledger_spent_shared(b, max_age=FALLBACK_LEDGER_MAX_AGE) for b in budgets))
    # No await from here on: the check and the local reservation are atomic within this process.
    for budget, ledger in zip(budgets, spent, strict=True):
        known = max(ledger, _last_seen(budget.redis_key))
        if known + _fallback.held(budget.redis_key) + reserve_micros > budget.limit_micros:
            raise _budget_exceeded(budget, reserve_micros)
    keys = [b.redis_key for b in budgets]
    _fallback.reserve(keys, request_id, reserve_micros)
    return Admission(request_id, reserve_micros, {}, keys, tokens=tokens, token_limits=token_limits, degraded=True)


class _Fallback:
    """What this process admitted by the PostgreSQL check and the ledger may not show yet:
    reservations in flight, and settled costs for ``LEDGER_LAG_SECONDS`` (the ledger is written
    asynchronously). Counting a cost twice for a few seconds errs on the side of refusing."""

    def __init__(self) -> None:
        self.inflight: dict[str, dict[str, int]] = {}
        self.recent: dict[str, deque[tuple[float, int]]] = {}

    def held(self, budget_key: str) -> int:
        recent = self.recent.get(budget_key)
        cutoff = time.monotonic()
        while recent and recent[0][0] < cutoff:
            recent.popleft()
        return sum(self.inflight.get(budget_key, {}).values()) + sum(m for _, m in recent or ())

    def reserve(self, budget_keys: list[str], reservation_id: str, micros: int) -> None:
        for budget_key in budget_keys:
            self.inflight.setdefault(budget_key, {})[reservation_id] = micros

    def settle(self, budget_keys: list[str], reservation_id: str, actual_micros: int) -> None:
        expires = time.monotonic() + LEDGER_LAG_SECONDS
        for budget_key in budget_keys:
            held = self.inflight.get(budget_key, {})
            if held.pop(reservation_id, None) is not None and actual_micros:
                self.recent.setdefault(budget_key, deque()).append((expires, actual_micros))
            if not held:
                self.inflight.pop(budget_key, None)


_fallback = _Fallback()

# Settlements Redis did not take, replayed in order once it answers (bounded: a process that
# cannot reach Redis for very long drops the oldest; their reservations then expire and reconcile).
_replay: deque[tuple[str, list[str], list[Any]]] = deque(maxlen=100_000)
_replaying: set[asyncio.Task] = set()


def _schedule_replay() -> None:
    if not _replay or _replaying:
        return
    task = asyncio.get_running_loop().create_task(_replay_pending())
    _replaying.add(task)
    task.add_done_callback(_replaying.discard)


async def _replay_pending() -> None:
    while _replay:
        kind, keys, args = _replay[0]
        script = SETTLE if kind == "settle" else SPEND
        try:
            await hot_call_patient(lambda client, s=script, k=keys, a=args: s(client, k, a))
        except RedisUnavailable:
            return
        if _replay and _replay[0][1] is keys:
            _replay.popleft()


async def replay_pending_settlements() -> int:
    """Replay now (tests, shutdown); returns how many are still waiting."""
    await _replay_pending()
    return len(_replay)


# --------------------------------------------------------------------------- embedded default
class _Local:
    """admit.lua and settle.lua for one process without Redis (the embedded default)."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.hashes: dict[str, dict[str, str]] = {}
        self.lock = threading.Lock()

    @staticmethod
    def _clock(arg: str) -> float:
        return float(arg) if arg != "" else time.time() * 1_000_000

    async def admit(self, keys: list[str], args: list[Any]) -> list[Any]:
        with self.lock:
            return self._admit(keys, [str(a) for a in args])

    def _admit(self, keys: list[str], argv: list[str]) -> list[Any]:
        now = self._clock(argv[0])
        rid, reserve = argv[1], int(argv[2])
        nr, nb = int(argv[4]), int(argv[5])
        boff = 6 + 2 * nr
        missing = []
        for i in range(nb):
            key = keys[nr + i]
            if key not in self.hashes:
                seed = argv[boff + 3 * i + 2]
                if seed == "":
                    missing.append(i + 1)
                else:
                    self.hashes[key] = {"spent": seed, "reserved": "0", "seeded_at": str(int(now))}
        if missing:
            return [3, missing]
        old, new = [], []
        deny, deny_wait = 0, 0.0
        for i in range(nr):
            limit, cost = int(argv[6 + 2 * i]), int(argv[7 + 2 * i])
            tat = max(self.values.get(keys[i], now), now)
            old.append(tat)
            new.append(tat + cost * PERIOD_US / limit)
            if new[i] - PERIOD_US - now > deny_wait:
                deny, deny_wait = i + 1, new[i] - PERIOD_US - now
        intervals = [PERIOD_US / int(argv[6 + 2 * i]) for i in range(nr)]
        if deny:
            out: list[Any] = [1, deny, math.ceil(deny_wait)]
            for i in range(nr):
                out += [math.floor((PERIOD_US - (old[i] - now)) / intervals[i]), math.ceil(old[i] - now)]
            return out
        field_name = f"r:{rid}"
        for i in range(nb):
            budget = self.hashes[keys[nr + i]]
            if field_name in budget:
                return [4]
            if int(budget["spent"]) + int(budget["reserved"]) + reserve > int(argv[boff + 3 * i]):
                return [2, i + 1, int(budget["spent"]), int(budget["reserved"])]
        out = [0]
        for i in range(nr):
            self.values[keys[i]] = math.ceil(new[i])
            out += [math.floor((PERIOD_US - (new[i] - now)) / intervals[i]), math.ceil(new[i] - now)]
        for i in range(nb):
            budget = self.hashes[keys[nr + i]]
            budget["reserved"] = str(int(budget["reserved"]) + reserve)
            budget[field_name] = str(reserve)
            out.append(int(budget["spent"]) + int(budget["reserved"]))
        return out

    async def settle(self, keys: list[str], args: list[Any]) -> int:
        with self.lock:
            argv = [str(a) for a in args]
            now = self._clock(argv[0])
            field_name, actual, delta = f"r:{argv[1]}", int(argv[2]), int(argv[3])
            nt, nb = int(argv[4]), int(argv[5])
            settled = 0
            for i in range(nb):
                budget = self.hashes.get(keys[nt + i])
                held = budget.pop(field_name, None) if budget is not None else None
                if held is not None:
                    budget["reserved"] = str(int(budget["reserved"]) - int(held))
                    budget["spent"] = str(int(budget["spent"]) + actual)
                    settled += 1
            if delta and (settled or nb == 0):
                for i in range(nt):
                    tat = max(self.values.get(keys[i], now), now)
                    self.values[keys[i]] = math.ceil(tat + delta * PERIOD_US / int(argv[6 + i]))
            return settled

    def budget(self, key: str) -> dict[str, str] | None:
        return self.hashes.get(key)


_local = _Local()


# --------------------------------------------------------------------------- reconciliation
@dataclass(frozen=True, slots=True)
class ReconcileResult:
    released: int  # reservations past their deadline whose amount was released
    released_micros: int
    dropped: int  # expired markers nobody settled within the grace hour


def reservations_reconcile(*, now: datetime | None = None, batch: int = 500) -> ReconcileResult:
    """Release reservations past their deadline (their process died before settling). Safe to run
    concurrently and repeatedly: each step is one atomic script on one reservation."""
    client = sredis.sync_client()
    if client is None:
        return ReconcileResult(0, 0, 0)
    if now is None:
        seconds, micros = client.time()
        now_us = int(seconds) * 1_000_000 + int(micros)
    else:
        now_us = int(now.timestamp() * 1_000_000)
    index = reservations_index_key()
    released = released_micros = dropped = 0
    while True:
        due = client.zrangebyscore(index, "-inf", now_us, start=0, num=batch)
        for raw in due:
            member = raw.decode() if isinstance(raw, bytes) else str(raw)
            budget_key, _, reservation_id = member.rpartition("|")
            state, micros = RECONCILE.sync(
                client, [index, budget_key], [member, reservation_id, now_us, EXPIRED_MARKER_US]
            )
            if int(state) == 1:
                released += 1
                released_micros += int(micros)
            elif int(state) == 2:
                dropped += 1
        if len(due) < batch:
            break
    if released:
        log.warning("released %d expired budget reservations (%d micro-dollars)", released, released_micros)
    return ReconcileResult(released, released_micros, dropped)


def forget_process_state() -> None:
    """Forget this process's in-memory state (down marker, fallback holds, pending replays, the
    embedded-default counters): for tests, and for a forked child that must not inherit them."""
    global _fallback, _local
    mark_redis_up()
    _replay.clear()
    _ledger_cache.clear()
    _ledger_loads.clear()
    _shadow.clear()
    _fallback = _Fallback()
    _local = _Local()
