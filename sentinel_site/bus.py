"""Cross-process invalidation of in-process caches over Redis pub/sub.

Caches that are safe to lose (API keys, the catalog, the price book) register a handler per topic;
a change published by any process reaches every process's handlers at once. Without Redis (the
embedded default: one process) ``publish`` calls the local handlers directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sentinel_site import redis as sredis

log = logging.getLogger(__name__)
CHANNEL = "bus:invalidate"

_handlers: dict[str, list[Callable[[str], None]]] = {}
_listener: asyncio.Task | None = None
_listener_loop: asyncio.AbstractEventLoop | None = None
subscribed = False


def register(topic: str, handler: Callable[[str], None]) -> None:
    _handlers.setdefault(topic, []).append(handler)


def _dispatch(message: str) -> None:
    topic, _, value = message.partition("|")
    for handler in _handlers.get(topic, ()):
        try:
            handler(value)
        except Exception:
            log.exception("invalidation handler failed for %s", topic)


def _all(reason: str) -> None:
    for topic in list(_handlers):
        _dispatch(f"{topic}|*")


def publish(topic: str, value: str = "*") -> None:
    message = f"{topic}|{value}"
    _dispatch(message)
    client = sredis.sync_client()
    if client is None:
        return
    try:
        client.publish(sredis.rkey(CHANNEL), message)
    except Exception:
        log.warning("invalidation %s not published (Redis unavailable); cache TTLs apply", message)


async def _listen() -> None:
    global subscribed
    while True:
        client = sredis.async_client()
        if client is None:
            return
        try:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(sredis.rkey(CHANNEL))
            subscribed = True
            _all("resubscribed")  # anything cached while we were deaf may be stale
            while True:
                # Not pubsub.listen(): it blocks on a read that the client's socket_timeout (2 s)
                # cuts on a quiet channel, and every resubscription above dropped every cache
                # (SQL bursts on the hot path every 2.5 s, seen in loadtests/bench.py).
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and message.get("type") == "message":
                    data = message["data"]
                    _dispatch(data.decode() if isinstance(data, bytes) else str(data))
        except asyncio.CancelledError:
            subscribed = False
            raise
        except Exception:
            subscribed = False
            log.warning("invalidation subscription lost; retrying")
            await asyncio.sleep(0.5)


def ensure_listener() -> None:
    """Start this event loop's subscriber once (cheap to call on every request)."""
    global _listener, _listener_loop
    if not sredis.enabled():
        return
    loop = asyncio.get_running_loop()
    if _listener is None or _listener_loop is not loop or _listener.done():
        _listener_loop = loop
        _listener = loop.create_task(_listen())
