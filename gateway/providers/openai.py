"""OpenAI-compatible providers (any base URL that speaks /chat/completions and /embeddings)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx

from gateway.catalog import RouteInfo
from gateway.providers.base import (
    Provider,
    StreamChunk,
    UpstreamFailure,
    Usage,
    failure_from_response,
)
from gateway.providers.sse import sse_frames


class OpenAIProvider(Provider):
    async def _json(self, path: str, route: RouteInfo, payload: dict) -> dict:
        response = await self._post(path, route, payload)
        body = await self._read(response)
        if response.status_code != 200:
            raise failure_from_response(response, body, self.info.name)
        try:
            return json.loads(body)
        except ValueError:
            raise UpstreamFailure(f"{self.info.name} sent invalid JSON", kind="protocol") from None

    async def chat(self, route: RouteInfo, body: dict, *, max_output_tokens: int) -> tuple[dict, Usage | None]:
        payload = {**body, "model": route.upstream_model, "stream": False}
        payload.pop("stream_options", None)
        data = await self._json("/chat/completions", route, payload)
        return data, Usage.from_openai(data.get("usage"))

    async def stream(self, route: RouteInfo, body: dict, *, max_output_tokens: int) -> AsyncIterator[StreamChunk]:
        # Usage is always requested upstream; the client gets it only if it asked.
        payload = {
            **body,
            "model": route.upstream_model,
            "stream": True,
            "stream_options": {**(body.get("stream_options") or {}), "include_usage": True},
        }
        response = await self._post("/chat/completions", route, payload)
        try:
            if response.status_code != 200:
                raise failure_from_response(response, await response.aread(), self.info.name)
            async for _event, data in sse_frames(response):
                if data == b"[DONE]":
                    return
                try:
                    obj = json.loads(data)
                except ValueError:
                    raise UpstreamFailure(f"{self.info.name} sent an invalid stream frame", kind="protocol") from None
                if "error" in obj and "choices" not in obj:
                    raise UpstreamFailure(f"{self.info.name} stream error", kind="status", status=502)
                yield StreamChunk(obj=obj, raw=b"data: " + data + b"\n\n")
        except httpx.TimeoutException as exc:
            raise UpstreamFailure(f"{self.info.name} timed out", kind="timeout", retryable=False) from exc
        except httpx.TransportError as exc:
            raise UpstreamFailure(f"{self.info.name} connection lost", kind="connect") from exc
        finally:
            await response.aclose()

    async def embed(self, route: RouteInfo, body: dict) -> tuple[dict, Usage | None]:
        data = await self._json("/embeddings", route, {**body, "model": route.upstream_model})
        usage = data.get("usage") or {}
        return data, Usage(prompt_tokens=int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0))
