"""Liveness and readiness. Readiness turns false first during a graceful shutdown."""

from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpRequest, JsonResponse

from sentinel_site import redis as sredis

shutting_down = asyncio.Event()


async def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False
    finally:
        connection.close()


async def ready(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {}
    checks["database"] = "ok" if await sync_to_async(_database_ok, thread_sensitive=False)() else "down"
    client = sredis.async_client()
    if client is None:
        checks["redis"] = "not configured"
    else:
        try:
            await asyncio.wait_for(client.ping(), timeout=1)
            checks["redis"] = "ok"
        except Exception:
            checks["redis"] = "down"
    if shutting_down.is_set():
        checks["shutdown"] = "in progress"
    healthy = all(v in {"ok", "not configured"} for v in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks}, status=200 if healthy else 503
    )
