"""Live metrics over a websocket: one consumer per console tab pushes the tenant's live counters
as HTMX fragments (out-of-band swaps matched by element id) every second.

Authenticated by the session (``scope["user"]``) and checked against the tenant membership on
connect and again every ``RECHECK_EVERY`` pushes: close code 4403 = not signed in, 4404 = not a
member (the same answer for "no such tenant").
"""

from __future__ import annotations

import asyncio
import json
import zoneinfo
from collections import deque
from datetime import datetime, timedelta

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string
from django.utils import timezone

from tenants.models import Tenant
from tenants.selectors import membership_for_slug

CLOSE_NOT_AUTHENTICATED = 4403
CLOSE_NOT_MEMBER = 4404
INTERVAL_SECONDS = 1.0
HISTORY_SECONDS = 60
RECHECK_EVERY = 15


class LiveMetricsConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        # Accept first: a close before accept is an HTTP 403 without our close code.
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_NOT_AUTHENTICATED)
            return
        tenant = await self._tenant()
        if tenant is None:
            await self.close(code=CLOSE_NOT_MEMBER)
            return
        self.tenant = tenant
        # the chart spans a full minute from the start; seconds before the connection are gaps
        start = self._local_now() - timedelta(seconds=HISTORY_SECONDS - 1)
        self.history: deque[tuple[str, float | None]] = deque(
            ((self._label(start + timedelta(seconds=i)), None) for i in range(HISTORY_SECONDS - 1)),
            maxlen=HISTORY_SECONDS,
        )
        self.task = asyncio.create_task(self._push_forever())

    async def disconnect(self, code: int) -> None:
        task = getattr(self, "task", None)
        if task is not None:
            task.cancel()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page sends nothing the server needs; ignore any message."""

    async def _tenant(self) -> Tenant | None:
        slug = self.scope["url_route"]["kwargs"]["tenant_slug"]
        membership = await sync_to_async(membership_for_slug)(user=self.scope["user"], tenant_slug=slug)
        return membership.tenant if membership is not None else None

    async def _push_forever(self) -> None:
        pushes = 0
        while True:
            if pushes and pushes % RECHECK_EVERY == 0 and await self._tenant() is None:
                await self.close(code=CLOSE_NOT_MEMBER)
                return
            html = await sync_to_async(self.render, thread_sensitive=False)()
            await self.send(text_data=html)
            pushes += 1
            await asyncio.sleep(INTERVAL_SECONDS)

    def _local_now(self) -> datetime:
        return timezone.now().astimezone(zoneinfo.ZoneInfo(self.tenant.timezone))

    @staticmethod
    def _label(at: datetime) -> str:
        # the tenant's wall-clock time without a zone: the chart shows zone-less labels as given
        return at.strftime("%Y-%m-%dT%H:%M:%S")

    def render(self) -> str:
        from tenants.views import live_context

        context = live_context(self.tenant)
        self.history.append((self._label(self._local_now()), round(context["snap"].requests_per_second, 2)))
        context["chart_json"] = json.dumps(
            {
                "labels": [label for label, _ in self.history],
                "series": [{"label": "Requests/s", "values": [value for _, value in self.history]}],
                "kind": "line",
                "format": "num",
            }
        )
        context["history_seconds"] = HISTORY_SECONDS
        context["oob"] = True
        with timezone.override(zoneinfo.ZoneInfo(self.tenant.timezone)):
            return render_to_string("tenants/live.html#live-metrics", context) + render_to_string(
                "tenants/live.html#live-chart", context
            )
