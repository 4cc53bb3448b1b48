"""The built-in mock provider: deterministic answers in-process, no network, no key.

Serves ``make run`` and demos. Latency and chunking come from settings
(``SENTINEL_MOCK_LATENCY_MS``, ``SENTINEL_MOCK_CHUNKS``, ``SENTINEL_MOCK_CHUNK_DELAY_MS``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from django.conf import settings

from gateway.catalog import RouteInfo
from gateway.providers import mock_engine
from gateway.providers.base import Provider, StreamChunk, Usage


class BuiltinMockProvider(Provider):
    async def chat(self, route: RouteInfo, body: dict, *, max_output_tokens: int) -> tuple[dict, Usage | None]:
        if settings.SENTINEL_MOCK_LATENCY_MS:
            await asyncio.sleep(settings.SENTINEL_MOCK_LATENCY_MS / 1000)
        data = mock_engine.chat_completion({**body, "model": route.upstream_model})
        return data, Usage.from_openai(data["usage"])

    async def stream(self, route: RouteInfo, body: dict, *, max_output_tokens: int) -> AsyncIterator[StreamChunk]:
        if settings.SENTINEL_MOCK_LATENCY_MS:
            await asyncio.sleep(settings.SENTINEL_MOCK_LATENCY_MS / 1000)
        delay = settings.SENTINEL_MOCK_CHUNK_DELAY_MS / 1000
        chunks = mock_engine.chat_completion_chunks(
            {**body, "model": route.upstream_model}, chunks=settings.SENTINEL_MOCK_CHUNKS, include_usage=True
        )
        for i, chunk in enumerate(chunks):
            if delay and i:
                await asyncio.sleep(delay)
            yield StreamChunk(obj=chunk)

    async def embed(self, route: RouteInfo, body: dict) -> tuple[dict, Usage | None]:
        data = mock_engine.embeddings_response({**body, "model": route.upstream_model})
        usage = data.get("usage") or {}
        return data, Usage(prompt_tokens=int(usage.get("prompt_tokens") or 0))
