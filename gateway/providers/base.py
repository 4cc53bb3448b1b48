"""What every provider adapter offers the router, in the OpenAI shape."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from django.conf import settings

from gateway.catalog import ProviderInfo, RouteInfo
from gateway.credentials import CredentialMissing, credential_for


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def from_openai(cls, usage: dict | None) -> Usage | None:
        if not usage:
            return None
        return cls(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            cached_tokens=int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            reasoning_tokens=int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0),
        )


class UpstreamFailure(Exception):
    """An attempt failed. ``retryable`` failures (connect errors, 408/409/429/5xx) may be retried or
    fall back to the next route, but only before the first byte reached the client."""

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        status: int | None = None,
        retryable: bool = True,
        retry_after: float | None = None,
        client_error: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind  # "connect" | "timeout" | "status" | "protocol" | "config"
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.client_error = client_error  # upstream's own 4xx error, safe to relay


@dataclass(slots=True)
class StreamChunk:
    obj: dict  # an OpenAI chat.completion.chunk
    raw: bytes | None = None  # the exact SSE frame when it can be forwarded untouched


class Provider:
    """Base adapter. Subclasses implement chat, stream and embed for one provider kind."""

    def __init__(self, info: ProviderInfo) -> None:
        self.info = info

    async def chat(self, route: RouteInfo, body: dict, *, max_output_tokens: int) -> tuple[dict, Usage | None]:
        raise UpstreamFailure(f"{self.info.kind} does not serve chat", kind="config", retryable=False)

    async def stream(self, route: RouteInfo, body: dict, *, max_output_tokens: int) -> AsyncIterator[StreamChunk]:
        raise UpstreamFailure(f"{self.info.kind} does not stream", kind="config", retryable=False)
        yield  # pragma: no cover - makes this an async generator

    async def embed(self, route: RouteInfo, body: dict) -> tuple[dict, Usage | None]:
        raise UpstreamFailure(f"{self.info.kind} does not serve embeddings", kind="config", retryable=False)

    def auth_headers(self, secret: str) -> dict[str, str]:
        """How this provider kind carries its credential."""
        return {"authorization": f"Bearer {secret}"}

    def base_headers(self) -> dict[str, str]:
        return {"content-type": "application/json"}

    def _headers(self) -> dict[str, str]:
        try:
            secret = credential_for(self.info)
        except CredentialMissing as exc:
            raise UpstreamFailure(str(exc), kind="config", retryable=True) from None
        headers = self.base_headers()
        if secret:
            headers.update(self.auth_headers(secret))
        return headers

    async def _post(self, path: str, route: RouteInfo, payload: dict) -> httpx.Response:
        """POST ``payload`` to ``base_url + path`` on the provider's pooled client, response streamed."""
        client = http_client(self.info)
        request = client.build_request(
            "POST",
            f"{self.info.base_url}{path}",
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

    async def _read(self, response: httpx.Response) -> bytes:
        """The whole (non-stream) response body; the connection goes back to the pool."""
        try:
            return await response.aread()
        except httpx.TimeoutException as exc:
            raise UpstreamFailure(f"{self.info.name} timed out", kind="timeout", retryable=False) from exc
        except httpx.TransportError as exc:
            raise UpstreamFailure(f"{self.info.name} connection lost", kind="connect") from exc
        finally:
            await response.aclose()


def timeout_for(route: RouteInfo) -> httpx.Timeout:
    read = route.timeout_seconds or settings.SENTINEL_UPSTREAM_READ_TIMEOUT
    return httpx.Timeout(connect=settings.SENTINEL_UPSTREAM_CONNECT_TIMEOUT, read=read, write=read, pool=read)


_clients: dict[tuple[int, str], httpx.AsyncClient] = {}


def http_client(provider: ProviderInfo) -> httpx.AsyncClient:
    """One pooled client per provider base URL and event loop (HTTP/1.1 keep-alive)."""
    key = (id(asyncio.get_running_loop()), provider.base_url)
    client = _clients.get(key)
    if client is None or client.is_closed:
        limits = httpx.Limits(
            max_connections=settings.SENTINEL_UPSTREAM_MAX_CONNECTIONS,
            max_keepalive_connections=settings.SENTINEL_UPSTREAM_MAX_CONNECTIONS,
            keepalive_expiry=30,
        )
        # aiohttp under httpx's API: measured 0.3-0.8 ms CPU per upstream call against 2-3 ms for
        # httpx's own transport. SENTINEL_UPSTREAM_TRANSPORT=httpx switches back.
        if settings.SENTINEL_UPSTREAM_TRANSPORT == "aiohttp":
            from httpx_aiohttp import AiohttpTransport

            transport: httpx.AsyncBaseTransport = AiohttpTransport(limits=limits)
        else:
            transport = httpx.AsyncHTTPTransport(limits=limits)
        client = httpx.AsyncClient(
            transport=transport,
            limits=limits,
            follow_redirects=False,
            timeout=httpx.Timeout(settings.SENTINEL_UPSTREAM_READ_TIMEOUT),
        )
        _clients[key] = client
    return client


def retry_after_of(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def failure_from_response(response: httpx.Response, body: bytes, provider: str) -> UpstreamFailure:
    status = response.status_code
    message = ""
    try:
        import json

        data = json.loads(body or b"{}")
        message = str((data.get("error") or {}).get("message") or "")[:500]
    except (ValueError, AttributeError):
        pass
    if status in (400, 404, 413, 422):
        # The request itself is wrong for this upstream (bad parameter, context too long): relay it.
        return UpstreamFailure(
            f"{provider} rejected the request: {message or status}",
            kind="status",
            status=status,
            retryable=False,
            client_error={"message": message or f"upstream returned {status}", "status": 400},
        )
    if status in (401, 403):
        return UpstreamFailure(
            f"{provider} refused Sentinel's credential", kind="status", status=status, retryable=True
        )
    return UpstreamFailure(
        f"{provider} answered {status}",
        kind="status",
        status=status,
        retryable=status in (408, 409, 429) or status >= 500,
        retry_after=retry_after_of(response),
    )
