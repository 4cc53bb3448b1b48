"""Anthropic Messages API, spoken from the OpenAI shape (see gateway.translate)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import httpx

from gateway import translate
from gateway.catalog import RouteInfo
from gateway.credentials import CredentialMissing, credential_for
from gateway.providers.base import (
    Provider,
    StreamChunk,
    UpstreamFailure,
    Usage,
    failure_from_response,
    http_client,
    timeout_for,
)
from gateway.providers.sse import sse_frames

API_VERSION = "2023-06-01"


class AnthropicProvider(Provider):
    def _headers(self) -> dict[str, str]:
        try:
            secret = credential_for(self.info)
        except CredentialMissing as exc:
            raise UpstreamFailure(str(exc), kind="config", retryable=True) from None
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if secret:
            headers["x-api-key"] = secret
        return headers

    async def _send(self, route: RouteInfo, payload: dict) -> httpx.Response:
        client = http_client(self.info)
        request = client.build_request(
            "POST",
            f"{self.info.base_url}/v1/messages",
            headers=self._headers(),
            content=json.dumps(payload, separators=(",", ":")),
            timeout=timeout_for(route),
        )
        try:
            return await client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamFailure(f"{self.info.name} timed out", kind="timeout", retryable=False) from exc
        except httpx.TransportError as exc:
            raise UpstreamFailure(f"{self.info.name} unreachable", kind="connect") from exc

    async def chat(self, route: RouteInfo, body: dict, *, max_output_tokens: int) -> tuple[dict, Usage | None]:
        payload = translate.openai_to_anthropic_request(
            {**body, "stream": False}, upstream_model=route.upstream_model, default_max_tokens=max_output_tokens
        )
        response = await self._send(route, payload)
        try:
            raw = await response.aread()
        except httpx.TimeoutException as exc:
            raise UpstreamFailure(f"{self.info.name} timed out", kind="timeout", retryable=False) from exc
        except httpx.TransportError as exc:
            raise UpstreamFailure(f"{self.info.name} connection lost", kind="connect") from exc
        finally:
            await response.aclose()
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
        response = await self._send(route, payload)
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
