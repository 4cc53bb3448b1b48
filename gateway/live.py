"""Per-tenant live counters for the console's live metrics (requests/s, tokens/s, error rate,
p95 latency, spend), kept in Redis per second, written cheaply by the gateway (one pipelined
round trip per process every ``FLUSH_SECONDS`` at most, off the request's path) and read by the
console's websocket consumer.

Layout, per tenant and epoch second ``s`` (keys expire after 5 minutes):
  ``t:{id}:live:{s}``      hash: req, err, tok, cost (micro-dollars)
  ``t:{id}:live:lat:{s}``  list of latencies in ms (for the percentile)
Without Redis (embedded default, one process) the same data lives in process memory.
"""

from __future__ import annotations

import time
import weakref
from collections import defaultdict, deque
from dataclasses import dataclass

from sentinel_site import redis as sredis

TTL_SECONDS = 300
_local: dict[int, deque[tuple[int, int, int, int, int, int]]] = defaultdict(lambda: deque(maxlen=20000))


@dataclass(frozen=True, slots=True)
class LiveSnapshot:
    window_seconds: int
    requests: int
    errors: int
    tokens: int
    cost_micros: int
    p95_latency_ms: int | None

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.window_seconds

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.window_seconds

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def spend_usd(self) -> float:
        return self.cost_micros / 1_000_000


def live_record(*, tenant_id: int, latency_ms: int, tokens: int, cost_micros: int, error: bool) -> None:
    """Count one finished request. Fire-and-forget: never raises, never blocks on a reply.

    Requests finishing within ``FLUSH_SECONDS`` of each other share one pipelined write: a round
    trip to Redis per request was a measurable part of the gateway's CPU (loadtests/bench.py)."""
    second = int(time.time())
    client = sredis.async_client() if sredis.enabled() else None
    if client is None:
        _local[tenant_id].append((second, 1, int(error), tokens, cost_micros, latency_ms))
        return
    import asyncio

    loop = asyncio.get_running_loop()
    batch = _batches.get(loop)
    if batch is None:
        batch = _batches[loop] = _Batch()
    counts = batch.counts[(tenant_id, second)]
    counts[0] += 1
    counts[1] += int(error)
    counts[2] += tokens
    counts[3] += cost_micros
    batch.latencies[(tenant_id, second)].append(latency_ms)
    if not batch.scheduled:
        batch.scheduled = True
        task = loop.create_task(_flush_later(client, batch))
        _pending.add(task)
        task.add_done_callback(_pending.discard)


FLUSH_SECONDS = 0.05


class _Batch:
    def __init__(self) -> None:
        self.scheduled = False
        self.counts: defaultdict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        self.latencies: defaultdict[tuple[int, int], list[int]] = defaultdict(list)


async def _flush_later(client, batch: _Batch) -> None:
    import asyncio

    await asyncio.sleep(FLUSH_SECONDS)
    counts, latencies = batch.counts, batch.latencies
    batch.counts, batch.latencies = defaultdict(lambda: [0, 0, 0, 0]), defaultdict(list)
    batch.scheduled = False
    try:
        pipe = client.pipeline(transaction=False)
        for (tenant_id, second), values in counts.items():
            key = sredis.tenant_key(tenant_id, "live", second)
            for field, value in zip(("req", "err", "tok", "cost"), values, strict=True):
                if value:
                    pipe.hincrby(key, field, value)
            pipe.expire(key, TTL_SECONDS)
        for (tenant_id, second), values in latencies.items():
            lat_key = sredis.tenant_key(tenant_id, "live", "lat", second)
            pipe.rpush(lat_key, *values)
            pipe.expire(lat_key, TTL_SECONDS)
        await pipe.execute()
    except Exception:  # live metrics are best effort; the ledger is the record
        return


_batches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_pending: set = set()


def _percentile(values: list[int], q: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def live_snapshot(*, tenant_id: int, window_seconds: int = 10) -> LiveSnapshot:
    """The tenant's last ``window_seconds`` (sync; the consumer wraps it)."""
    now = int(time.time())
    seconds = range(now - window_seconds + 1, now + 1)
    client = sredis.sync_client()
    if client is None:
        rows = [r for r in _local.get(tenant_id, ()) if r[0] in seconds]
        return LiveSnapshot(
            window_seconds,
            sum(r[1] for r in rows),
            sum(r[2] for r in rows),
            sum(r[3] for r in rows),
            sum(r[4] for r in rows),
            _percentile([r[5] for r in rows], 0.95),
        )
    pipe = client.pipeline(transaction=False)
    for s in seconds:
        pipe.hgetall(sredis.tenant_key(tenant_id, "live", s))
    for s in seconds:
        pipe.lrange(sredis.tenant_key(tenant_id, "live", "lat", s), 0, -1)
    results = pipe.execute()
    hashes, lats = results[:window_seconds], results[window_seconds:]
    total = {"req": 0, "err": 0, "tok": 0, "cost": 0}
    for h in hashes:
        for field in total:
            total[field] += int(h.get(field.encode(), 0))
    latencies = [int(v) for chunk in lats for v in chunk]
    return LiveSnapshot(
        window_seconds, total["req"], total["err"], total["tok"], total["cost"], _percentile(latencies, 0.95)
    )
