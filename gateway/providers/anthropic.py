"""Anthropic Messages API, spoken from the OpenAI shape (see gateway.translate)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import httpx

from gateway import translate
from gateway.catalog import RouteInfo
from gateway.providers.base import (
    Provider,
    StreamChunk,
    UpstreamFailure,
    Usage,
    failure_from_response,
)
from gateway.providers.sse import sse_frames

API_VERSION = "2023-06-01"


class AnthropicProvider(Provider):
    def base_headers(self) -> dict[str, str]:
        return {"content-type": "application/json", "anthropic-version": API_VERSION}

    def auth_headers(self, secret: str) -> dict[str, str]:
        return {"x-api-key": secret}

    async def chat(self, route: RouteInfo, body: dict, *, max_output_tokens: int) -> tuple[dict, Usage | None]:
        payload = translate.openai_to_anthropic_request(
            {**body, "stream": False}, upstream_model=route.upstream_model, default_max_tokens=max_output_tokens
        )
        response = await self._post("/v1/messages", route, payload)
        raw = await self._read(response)
        if response.status_code != 200:
            raise failure_from_response(response, raw, self.info.name)
        try:
            data = translate.anthropic_response_to_openai(json.loads(raw), model=body.get("model", ""))
        except ValueError:
            raise UpstreamFailure(f"{self.info.name} sent invalid JSON", kind="protocol") from None
        return data, Usage.from_openai(data["usage"])

    async def stream(self, route: RouteInfo, body: dict, *, max_output_tokens: int) -> AsyncIterator[StreamChunk]:
        payload = translate.openai_to_anthropic_request(
            {**body, "stream": True}, upstream_model=route.upstream_model, default_max_tokens=max_output_tokens
        )
        response = await self._post("/v1/messages", route, payload)
        converter = translate.AnthropicStreamToOpenAI(model=body.get("model", ""), created=int(time.time()))
        try:
            if response.status_code != 200:
                raise failure_from_response(response, await response.aread(), self.info.name)
            async for event, data in sse_frames(response):
                try:
                    obj = json.loads(data)
                except ValueError:
                    raise UpstreamFailure(f"{self.info.name} sent an invalid stream frame", kind="protocol") from None
                if obj.get("type") == "error":
                    raise UpstreamFailure(f"{self.info.name} stream error", kind="status", status=502)
                for chunk in converter.feed(event, obj):
                    yield StreamChunk(obj=chunk)
                if obj.get("type") == "message_stop":
                    return
        except httpx.TimeoutException as exc:
            raise UpstreamFailure(f"{self.info.name} timed out", kind="timeout", retryable=False) from exc
        except httpx.TransportError as exc:
            raise UpstreamFailure(f"{self.info.name} connection lost", kind="connect") from exc
        finally:
            await response.aclose()
