"""Database access from the async hot path.

Under ASGI each request's thread-sensitive ORM calls run on a thread of its own, and the
connection that thread took from the pool stays checked out until the request finishes: for a
gateway request that is the whole upstream call, a stream included. Sixty in-flight requests that
touched the database once (a cold key, a budget rebuilt from the ledger) would hold sixty pooled
connections and starve the rest. ``adb`` runs a sync function and hands the connection back to
the pool as soon as it returns.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.db import connection


def released[**P, T](fn: Callable[P, T]) -> Callable[P, T]:
    """``fn``, returning its thread's connection to the pool afterwards (not inside a transaction:
    that connection belongs to the caller)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            if not connection.in_atomic_block:
                connection.close()

    return wrapper


async def adb[**P, T](fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Await the sync database function ``fn`` without keeping a pooled connection afterwards."""
    return await sync_to_async(released(fn))(*args, **kwargs)
