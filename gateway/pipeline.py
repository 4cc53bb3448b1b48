"""One gateway request, start to finish (see docs/ARCHITECTURE.md, "the hot path").

    prepare:  model -> policy -> price (fail closed) -> limits + budget reservation (one Redis
              round trip) -> guardrails
    run:      cache (tenant-scoped, single-flight) -> routes (retries, fallback, breakers) ->
              JSON response or SSE stream
    finish:   settle the reservation to the actual cost, hand exactly one UsageRecord to billing,
              metrics, live counters — also when the client hung up or the upstream died.

``Call.finish`` is idempotent: whatever path a request takes, it is recorded once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone

from billing.pricing import Quote, pricebook
from billing.services import usage_submit
from billing.usage import UsageRecord
from gateway import cache, guardrails, limits, metrics, translate
from gateway.catalog import ModelInfo, RouteInfo, snapshot
from gateway.errors import (
    BudgetExceeded,
    GatewayError,
    GuardrailBlocked,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    RateLimited,
    UpstreamUnavailable,
)
from gateway.live import live_record
from gateway.providers import adapter_for
from gateway.providers.base import StreamChunk, UpstreamFailure, Usage
from gateway.providers.mock_engine import count_tokens, prompt_text
from gateway.routing import Attempts, breaker_for, call_with_routes
from gateway.security import guardrail_triggered
from tenants.models import ApiKey

log = logging.getLogger(__name__)
DONE = b"data: [DONE]\n\n"
HEARTBEAT = b": keep-alive\n\n"
READ_AHEAD = 64  # upstream chunks a stream reads ahead of a slow client
_background: set[asyncio.Task] = set()


def spawn(coro) -> asyncio.Task:
    """Run ``coro`` to completion even if the request's task is cancelled (graceful shutdown waits)."""
    task = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def drain_background(timeout: float) -> None:
    if _background:
        await asyncio.wait(set(_background), timeout=timeout)


def parse_tags(request: HttpRequest, body: dict) -> dict[str, str]:
    tags: dict[str, str] = {}
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        tags.update({str(k)[:64]: str(v)[:128] for k, v in metadata.items() if isinstance(v, str | int)})
    header = request.headers.get("x-sentinel-tags", "")
    for item in header.split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            tags[name.strip()[:64]] = value.strip()[:128]
    return dict(list(tags.items())[:20])


@dataclass(slots=True)
class Call:
    request: HttpRequest
    key: ApiKey
    endpoint: str
    model: ModelInfo
    public_model: str
    quote: Quote
    body: dict[str, Any]
    stream: bool
    include_usage: bool
    tags: dict[str, str]
    prompt_estimate: int
    reserve_prompt_tokens: int = 0
    admission: limits.Admission | None = None
    started: float = field(default_factory=time.perf_counter)
    created_at: datetime = field(default_factory=timezone.now)
    attempts: Attempts = field(default_factory=Attempts)
    guardrail_flags: list[str] = field(default_factory=list)
    cache_status: str = ""
    upstream_seconds: float = 0.0
    ttft: float | None = None
    finished: bool = False

    @property
    def request_id(self) -> str:
        return self.request.request_id  # type: ignore[attr-defined]

    @property
    def tenant(self):
        return self.key.tenant

    def response_headers(self) -> dict[str, str]:
        headers = dict(self.admission.headers) if self.admission else {}
        if self.cache_status:
            headers["x-sentinel-cache"] = self.cache_status
        if self.attempts.route is not None:
            headers["x-sentinel-route"] = self.attempts.route.label
        return headers

    async def finish(
        self,
        *,
        usage: Usage | None,
        status: str,
        http_status: int,
        estimated: bool = False,
        error_type: str = "",
        cache_hit: bool = False,
    ) -> None:
        """Settle, record exactly one UsageRecord, count metrics. Safe to call more than once."""
        if self.finished:
            return
        self.finished = True
        usage = usage or Usage()
        cost = (
            0
            if cache_hit
            else self.quote.cost_micros(
                prompt_tokens=usage.prompt_tokens,
                cached_tokens=usage.cached_tokens,
                completion_tokens=usage.completion_tokens,
            )
        )
        route = self.attempts.route
        tenant = self.tenant
        latency = time.perf_counter() - self.started
        record = UsageRecord(
            request_id=self.request_id,
            tenant_id=tenant.pk,
            api_key_id=self.key.pk,
            model=self.public_model,
            created_at=self.created_at,
            endpoint=self.endpoint,
            provider=route.provider.name if route else "",
            route=route.label if route else "",
            attempts=self.attempts.count,
            prompt_tokens=usage.prompt_tokens,
            cached_tokens=usage.cached_tokens,
            completion_tokens=usage.completion_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            cost_micros=cost,
            price_id=self.quote.price_id,
            adjustment_percent=self.quote.adjustment_percent,
            status=status,
            http_status=http_status,
            latency_ms=int(latency * 1000),
            ttft_ms=int(self.ttft * 1000) if self.ttft is not None else None,
            estimated=estimated,
            cache_hit=cache_hit,
            stream=self.stream,
            tags=self.tags,
            guardrail_flags=self.guardrail_flags,
            error_type=error_type,
            prompt_log=(
                guardrails.redact_text(prompt_text(self.body.get("messages") or []))[:4000]
                if tenant.log_prompts
                else ""
            ),
        )
        # The settlement and the usage record go out together (one write to Redis, one round trip),
        # and finish even if the request is cancelled meanwhile: neither is ever lost.
        handoff = [usage_submit(record)]
        if self.admission is not None:
            handoff.append(
                limits.settle(
                    key=self.key,
                    admission=self.admission,
                    actual_micros=cost,
                    actual_tokens=usage.prompt_tokens + usage.completion_tokens,
                )
            )
        outcomes = await asyncio.shield(asyncio.gather(*handoff, return_exceptions=True))
        provider = route.provider.name if route else "none"
        tlabel = metrics.tenant_label(tenant.slug)
        metrics.requests_total.labels(
            tenant=tlabel, model=self.public_model, provider=provider, status=str(http_status)
        ).inc()
        metrics.request_duration.labels(model=self.public_model, provider=provider).observe(latency)
        if self.ttft is not None:
            metrics.ttft.labels(model=self.public_model, provider=provider).observe(self.ttft)
        metrics.overhead.observe(max(latency - self.upstream_seconds, 0.0))
        for kind, count in (
            ("prompt", usage.prompt_tokens),
            ("completion", usage.completion_tokens),
            ("cached", usage.cached_tokens),
        ):
            if count:
                metrics.tokens_total.labels(tenant=tlabel, model=self.public_model, type=kind).inc(count)
        if cost:
            metrics.cost_usd_total.labels(tenant=tlabel, model=self.public_model).inc(cost / 1_000_000)
        live_record(
            tenant_id=tenant.pk,
            latency_ms=int(latency * 1000),
            tokens=usage.prompt_tokens + usage.completion_tokens,
            cost_micros=cost,
            error=http_status >= 500,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome


async def prepare(request: HttpRequest, key: ApiKey, body: dict, *, endpoint: str, kind: str) -> Call:
    """Everything before the upstream call. Raises a GatewayError for the client."""
    name = body.get("model") or ""
    catalog = await snapshot()
    model = catalog.models.get(name)
    if model is not None and model.kind == kind and not model.routes and model.unconfigured:
        raise UpstreamUnavailable(
            f"The model '{name}' is not available on this deployment: no credentials are configured for "
            f"its provider ({', '.join(model.unconfigured)}).",
            code="provider_not_configured",
        )
    if model is None or model.kind != kind or not model.routes:
        raise ModelNotFound(f"The model '{name}' does not exist or is not available.", param="model")
    tenant = key.tenant
    allowed = key.allowed_models or tenant.allowed_models
    if allowed and name not in allowed:
        raise PermissionDenied(f"This API key may not use the model '{name}'.", param="model")
    quote = await pricebook.aquote(tenant_id=tenant.pk, model_name=name)
    if quote is None:
        # Fail closed: an unpriced model would be billed $0.
        raise PermissionDenied(
            f"The model '{name}' has no price configured; it cannot be used until it has one.",
            param="model",
            code="model_not_priced",
        )
    stream = bool(body.get("stream"))
    options = body.get("stream_options") or {}
    if kind == "embedding":
        inputs = body.get("input")
        text = (
            inputs if isinstance(inputs, str) else " ".join(i if isinstance(i, str) else "x" * len(i) for i in inputs)
        )
        prompt_estimate, max_out = count_tokens(text) + 1, 0
        reserve_prompt = prompt_estimate
    else:
        messages = body.get("messages") or []
        # Two counts: a realistic one for usage the upstream never reports, and limits' deliberately
        # generous one for the reservation (under-reserving would let a budget be overspent).
        prompt_estimate = count_tokens(prompt_text(messages)) + 4 * len(messages)
        reserve_prompt = limits.estimate_prompt_tokens(messages)
        max_out = body.get("max_completion_tokens") or body.get("max_tokens") or model.max_output_tokens
        max_out = min(int(max_out), model.max_output_tokens) * int(body.get("n") or 1)
    call = Call(
        request=request,
        key=key,
        endpoint=endpoint,
        model=model,
        public_model=name,
        quote=quote,
        body=body,
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        tags=parse_tags(request, body),
        prompt_estimate=prompt_estimate,
        reserve_prompt_tokens=reserve_prompt,
    )
    reserve = limits.estimate_reserve_micros(quote, reserve_prompt, max_out)
    try:
        call.admission = await limits.admit(
            key=key, tokens=reserve_prompt + max_out, reserve_micros=reserve, request_id=call.request_id
        )
    except RateLimited as exc:
        metrics.rate_limited_total.labels(scope=getattr(exc, "scope", "key")).inc()
        raise
    except BudgetExceeded:
        metrics.budget_rejections_total.labels(tenant=metrics.tenant_label(tenant.slug)).inc()
        raise
    if kind == "chat":
        try:
            apply_guardrails(call)
        except GuardrailBlocked:
            await call.finish(usage=None, status="rejected", http_status=400, error_type="guardrail_blocked")
            raise
    return call


def apply_guardrails(call: Call) -> None:
    policies = call.tenant.guardrails or {}
    if not policies or all(v == "off" for v in policies.values()):
        return
    result = guardrails.apply(policies=policies, messages=call.body["messages"])
    for detection in result.detections:
        metrics.guardrail_detections_total.labels(detector=detection.detector, action=detection.action).inc(
            detection.count
        )
        call.guardrail_flags.append(f"{detection.detector}:{detection.kind}:{detection.action}")
    seen: set[tuple[str, str]] = set()
    for detection in result.detections:
        if (detection.detector, detection.action) not in seen:
            seen.add((detection.detector, detection.action))
            guardrail_triggered(call.request, call.key, detector=detection.detector, action=detection.action)
    if result.blocked is not None:
        raise GuardrailBlocked(
            f"The request was blocked by the tenant's {result.blocked.detector} guardrail ({result.blocked.kind}).",
            param="messages",
        )
    if result.messages is not call.body["messages"]:
        call.body = {**call.body, "messages": result.messages}


# --------------------------------------------------------------------------- responses
def json_response(data: dict, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(json.dumps(data, separators=(",", ":")), status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _cache_enabled(call: Call) -> bool:
    if call.tenant.cache_ttl_seconds <= 0 or (call.body.get("n") or 1) > 1:
        return False
    request = call.request
    if (
        "no-cache" in request.headers.get("cache-control", "")
        or request.headers.get("x-sentinel-cache", "").lower() == "bypass"
    ):
        call.cache_status = "bypass"
        metrics.cache_requests_total.labels(result="bypass").inc()
        return False
    return True


async def run_chat(call: Call, *, surface: str = "openai") -> HttpResponse:
    """Answer a prepared chat call: cache, upstream (stream or not), finish."""
    try:
        cache_key = None
        if _cache_enabled(call):
            cache_key = cache.cache_key(tenant_id=call.tenant.pk, endpoint=call.endpoint, body=call.body)
            if not call.stream:
                # Lookup and single-flight lock in one round trip: identical concurrent requests
                # wait for the leader's answer.
                async with cache.fetch_or_lead(tenant_id=call.tenant.pk, key=cache_key) as cached:
                    if cached is None:
                        _count_cache(call, "miss")
                        data, usage = await _complete(call)
                        # Stored (and the lock released) in the same round trip as the settlement.
                        store = cache.store(
                            tenant_id=call.tenant.pk, key=cache_key, response=data, ttl=call.tenant.cache_ttl_seconds
                        )
                        return await _answer(call, data, usage, surface, also=store)
                _count_cache(call, "hit")
                return await _answer(call, cached, Usage.from_openai(cached.get("usage")), surface, cache_hit=True)
            cached = await cache.lookup(tenant_id=call.tenant.pk, key=cache_key)
            if cached is not None:
                _count_cache(call, "hit")
                return await _answer(call, cached, Usage.from_openai(cached.get("usage")), surface, cache_hit=True)
            # A streamed miss streams from upstream and stores the assembled answer at the end.
            _count_cache(call, "miss")
        if call.stream:
            return await _open_stream(call, surface, cache_key=cache_key)
        data, usage = await _complete(call)
        return await _answer(call, data, usage, surface)
    except GatewayError as exc:
        await call.finish(usage=None, status="error", http_status=exc.status, error_type=exc.code or exc.type)
        raise
    except asyncio.CancelledError:
        spawn(call.finish(usage=None, status="client_closed", http_status=499, error_type="client_closed"))
        raise


async def within_total_timeout(route: RouteInfo, awaitable):
    """``SENTINEL_UPSTREAM_TOTAL_TIMEOUT`` bounds a whole upstream call (connect/read timeouts bound
    each step): a provider trickling bytes forever still ends with a 504."""
    try:
        async with asyncio.timeout(settings.SENTINEL_UPSTREAM_TOTAL_TIMEOUT):
            return await awaitable
    except TimeoutError:
        raise UpstreamFailure(
            f"{route.provider.name} exceeded the total timeout", kind="timeout", retryable=False
        ) from None


def _count_cache(call: Call, result: str) -> None:
    call.cache_status = result
    metrics.cache_requests_total.labels(result=result).inc()


async def _complete(call: Call) -> tuple[dict, Usage | None]:
    started = time.perf_counter()

    async def attempt(route: RouteInfo):
        return await within_total_timeout(
            route,
            adapter_for(route.provider).chat(
                route, {**call.body, "stream": False}, max_output_tokens=call.model.max_output_tokens
            ),
        )

    try:
        return await call_with_routes(call.model, attempt, call.attempts)
    finally:
        call.upstream_seconds += time.perf_counter() - started


async def _answer(
    call: Call, data: dict, usage: Usage | None, surface: str, *, cache_hit: bool = False, also=None
) -> HttpResponse:
    """Finish the call (and await ``also``, a cache store, alongside: one round trip) and respond."""
    estimated = usage is None
    if usage is None:
        text = "".join((c.get("message") or {}).get("content") or "" for c in data.get("choices") or [])
        usage = Usage(prompt_tokens=call.prompt_estimate, completion_tokens=count_tokens(text))
    finish = call.finish(usage=usage, status="ok", http_status=200, estimated=estimated, cache_hit=cache_hit)
    if also is None:
        await finish
    else:
        await asyncio.gather(finish, also)
    headers = call.response_headers()
    if call.stream:  # a cached answer replayed as a stream
        return _replay_stream(call, data, surface, headers)
    if surface == "anthropic":
        return json_response(translate.openai_response_to_anthropic(data, model=call.public_model), headers=headers)
    return json_response(data, headers=headers)


def _sse_response(iterator: AsyncIterator[bytes], headers: dict[str, str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(iterator, content_type="text/event-stream")
    response["cache-control"] = "no-cache"
    response["x-accel-buffering"] = "no"
    for name, value in headers.items():
        response[name] = value
    return response


def _frame(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _event(name: str, obj: dict) -> bytes:
    return f"event: {name}\n".encode() + _frame(obj)


def _replay_stream(call: Call, data: dict, surface: str, headers: dict[str, str]) -> StreamingHttpResponse:
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    base = {
        "id": data.get("id"),
        "object": "chat.completion.chunk",
        "created": data.get("created", 0),
        "model": data.get("model"),
    }
    chunks = [
        {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": message.get("content") or ""},
                    "finish_reason": None,
                }
            ],
        }
    ]
    for i, tool_call in enumerate(message.get("tool_calls") or []):
        chunks.append(
            {
                **base,
                "choices": [{"index": 0, "delta": {"tool_calls": [{**tool_call, "index": i}]}, "finish_reason": None}],
            }
        )
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": choice.get("finish_reason")}]})
    if call.include_usage or surface == "anthropic":
        chunks.append({**base, "choices": [], "usage": data.get("usage")})

    async def replay() -> AsyncIterator[bytes]:
        if surface == "anthropic":
            converter = translate.OpenAIStreamToAnthropic(
                model=call.public_model, input_tokens_estimate=call.prompt_estimate
            )
            for chunk in chunks:
                for name, obj in converter.feed(chunk):
                    yield _event(name, obj)
            for name, obj in converter.finish():
                yield _event(name, obj)
            return
        for chunk in chunks:
            yield _frame(chunk)
        yield DONE

    return _sse_response(replay(), headers)


# --------------------------------------------------------------------------- streaming
async def _open_stream(call: Call, surface: str, *, cache_key: str | None = None) -> StreamingHttpResponse:
    """Open the upstream stream and wait for its first chunk (retries and fallback happen here,
    before any byte reaches the client), then relay the rest as it arrives."""
    started = time.perf_counter()

    async def attempt(route: RouteInfo):
        iterator = adapter_for(route.provider).stream(route, call.body, max_output_tokens=call.model.max_output_tokens)
        try:
            first = await within_total_timeout(route, iterator.__anext__())
        except StopAsyncIteration:
            raise UpstreamFailure(f"{route.provider.name} closed the stream without data", kind="protocol") from None
        except BaseException:
            await iterator.aclose()
            raise
        return iterator, first

    iterator, first = await call_with_routes(call.model, attempt, call.attempts)
    call.ttft = time.perf_counter() - call.started
    call.upstream_seconds += time.perf_counter() - started
    relay = StreamRelay(call, iterator, first, surface, cache_key=cache_key)
    return _sse_response(relay.run(), call.response_headers())


class StreamRelay:
    """Forwards chunks as they arrive (no buffering), tracks usage, and finishes the call once,
    whether the stream ends, the upstream dies mid-way, or the client hangs up."""

    def __init__(
        self,
        call: Call,
        iterator: AsyncIterator[StreamChunk],
        first: StreamChunk,
        surface: str,
        *,
        cache_key: str | None = None,
    ) -> None:
        self.call = call
        self.cache_key = cache_key
        self.assembled = _Assembler() if cache_key else None
        self.iterator = iterator
        self.first = first
        self.surface = surface
        self.usage: Usage | None = None
        self.text_chars = 0
        self.converter = (
            translate.OpenAIStreamToAnthropic(model=call.public_model, input_tokens_estimate=call.prompt_estimate)
            if surface == "anthropic"
            else None
        )
        # One task reads the upstream for the whole stream (not one per chunk) into a bounded queue:
        # a slow client holds the upstream back after READ_AHEAD chunks.
        self.queue: asyncio.Queue = asyncio.Queue(READ_AHEAD)
        self.pump: asyncio.Task | None = None
        self.deadline = (
            time.monotonic() - (time.perf_counter() - call.started) + settings.SENTINEL_UPSTREAM_TOTAL_TIMEOUT
        )

    def _track(self, chunk: dict) -> bool:
        """Account one chunk; True if it should be forwarded to the client."""
        usage = chunk.get("usage")
        if usage:
            self.usage = Usage.from_openai(usage)
        if self.assembled is not None:
            self.assembled.feed(chunk)
        choices = chunk.get("choices")
        for choice in choices or ():
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                self.text_chars += len(content)
            for tool_call in delta.get("tool_calls") or ():
                self.text_chars += len((tool_call.get("function") or {}).get("arguments") or "")
        return bool(choices) or self.call.include_usage

    def _encode(self, chunk: StreamChunk) -> bytes:
        if self.converter is not None:
            return b"".join(_event(name, obj) for name, obj in self.converter.feed(chunk.obj))
        return chunk.raw or _frame(chunk.obj)

    def _estimated_usage(self) -> Usage:
        return Usage(prompt_tokens=self.call.prompt_estimate, completion_tokens=(self.text_chars + 3) // 4)

    def _over_reservation(self) -> bool:
        admission = self.call.admission
        if admission is None or not admission.reserved_micros or self.usage is not None:
            return False
        spent = self.call.quote.cost_micros(
            prompt_tokens=self.call.reserve_prompt_tokens, completion_tokens=(self.text_chars + 3) // 4
        )
        return spent > admission.reserved_micros

    def _error_frame(self, message: str, code: str) -> bytes:
        if self.converter is not None:
            return _event("error", {"type": "error", "error": {"type": "api_error", "message": message}})
        return _frame({"error": {"message": message, "type": "api_error", "param": None, "code": code}})

    async def _pump(self) -> None:
        try:
            while True:
                await self.queue.put(await self.iterator.__anext__())
        except StopAsyncIteration:
            await self.queue.put(_End(None))
        except Exception as exc:  # handed to the relay, which ends the stream with an error event
            await self.queue.put(_End(exc))

    @staticmethod
    def _unwrap(item: StreamChunk | _End) -> StreamChunk:
        if isinstance(item, _End):
            if item.error is None:
                raise StopAsyncIteration
            raise item.error
        return item

    def _next_ready(self) -> StreamChunk | None:
        """A chunk that has already arrived, or None."""
        try:
            item = self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
        return self._unwrap(item)

    async def _next(self) -> StreamChunk:
        """The next upstream chunk; ``_Heartbeat`` after a silence of ``SENTINEL_STREAM_HEARTBEAT``
        seconds; an UpstreamFailure once the stream outlives ``SENTINEL_UPSTREAM_TOTAL_TIMEOUT``."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise UpstreamFailure("the stream exceeded the total timeout", kind="timeout", retryable=False)
        chunk = self._next_ready()
        if chunk is not None:
            return chunk
        heartbeat = settings.SENTINEL_STREAM_HEARTBEAT
        try:
            async with asyncio.timeout(min(heartbeat, remaining) if heartbeat > 0 else remaining):
                item = await self.queue.get()
        except TimeoutError:
            if time.monotonic() >= self.deadline:
                raise UpstreamFailure(
                    "the stream exceeded the total timeout", kind="timeout", retryable=False
                ) from None
            raise _Heartbeat from None
        return self._unwrap(item)

    async def run(self) -> AsyncIterator[bytes]:
        """Chunks that arrived together leave together (one write to the client); none waits for
        a later one."""
        metrics.active_streams.inc()
        status, http_status, error_type = "ok", 200, ""
        route = self.call.attempts.route
        self.pump = asyncio.get_running_loop().create_task(self._pump())
        batch: list[bytes] = []
        try:
            chunk: StreamChunk | None = self.first
            while True:
                if chunk is None:
                    if batch:
                        yield b"".join(batch)
                        batch = []
                    try:
                        chunk = await self._next()
                    except _Heartbeat:
                        yield HEARTBEAT
                        continue
                    except StopAsyncIteration:
                        break
                if self._track(chunk.obj):
                    batch.append(self._encode(chunk))
                if self._over_reservation():
                    status, http_status, error_type = "error", 200, "budget_reservation_reached"
                    batch.append(
                        self._error_frame(
                            "The stream reached its budget reservation and was ended.", "insufficient_quota"
                        )
                    )
                    yield b"".join(batch)
                    return
                try:
                    chunk = self._next_ready()
                except StopAsyncIteration:
                    break
            if self.converter is not None:
                batch.extend(_event(name, obj) for name, obj in self.converter.finish())
            else:
                batch.append(DONE)
            yield b"".join(batch)
        except UpstreamFailure as failure:
            # Never retried: bytes already reached the client. End with an error event.
            timed_out = failure.kind == "timeout"
            status, http_status, error_type = "error", 504 if timed_out else 502, f"upstream_{failure.kind}"
            if route is not None:
                breaker_for(route).failure()
            if timed_out:
                batch.append(
                    self._error_frame(
                        "The upstream provider did not finish within the total timeout; the response is incomplete.",
                        "upstream_timeout",
                    )
                )
            else:
                batch.append(
                    self._error_frame(
                        "The upstream provider failed mid-stream; the response is incomplete.", "upstream_error"
                    )
                )
            yield b"".join(batch)
        except asyncio.CancelledError:
            status, http_status, error_type = "client_closed", 499, "client_closed"
            raise
        finally:
            metrics.active_streams.dec()
            spawn(self._close_and_finish(status, http_status, error_type))

    async def _close_and_finish(self, status: str, http_status: int, error_type: str) -> None:
        if self.pump is not None:
            self.pump.cancel()  # closes the upstream connection promptly
            try:
                await self.pump
            except BaseException:  # noqa: S110 - the upstream's last words do not matter any more
                pass
        try:
            await self.iterator.aclose()
        except Exception:
            log.debug("upstream iterator close failed", exc_info=True)
        estimated = self.usage is None
        await self.call.finish(
            usage=self.usage or self._estimated_usage(),
            status=status,
            http_status=http_status,
            estimated=estimated,
            error_type=error_type,
        )
        if status == "ok" and self.assembled is not None and self.cache_key and not estimated:
            await cache.store(
                tenant_id=self.call.tenant.pk,
                key=self.cache_key,
                response=self.assembled.response(),
                ttl=self.call.tenant.cache_ttl_seconds,
            )


class _Assembler:
    """Rebuilds the non-stream chat.completion from a stream's chunks (for the response cache)."""

    def __init__(self) -> None:
        self.base: dict = {}
        self.text: list[str] = []
        self.tool_calls: dict[int, dict] = {}
        self.finish_reason: str | None = None
        self.usage: dict | None = None

    def feed(self, chunk: dict) -> None:
        if not self.base:
            self.base = {"id": chunk.get("id"), "created": chunk.get("created"), "model": chunk.get("model")}
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.text.append(delta["content"])
            for call in delta.get("tool_calls") or ():
                slot = self.tool_calls.setdefault(
                    call.get("index", 0), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
                )
                slot["id"] = call.get("id") or slot["id"]
                fn = call.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def response(self) -> dict:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.text) or None}
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        return {
            **self.base,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason or "stop"}],
            "usage": self.usage,
        }


class _Heartbeat(Exception):
    pass


class _End:
    """The pump's last item: the upstream ended (``error`` None) or failed."""

    __slots__ = ("error",)

    def __init__(self, error: Exception | None) -> None:
        self.error = error


# --------------------------------------------------------------------------- embeddings
async def run_embeddings(call: Call) -> HttpResponse:
    started = time.perf_counter()

    async def attempt(route: RouteInfo):
        return await within_total_timeout(route, adapter_for(route.provider).embed(route, call.body))

    try:
        data, usage = await call_with_routes(call.model, attempt, call.attempts)
    except GatewayError as exc:
        await call.finish(usage=None, status="error", http_status=exc.status, error_type=exc.code or exc.type)
        raise
    finally:
        call.upstream_seconds += time.perf_counter() - started
    estimated = usage is None or not usage.prompt_tokens
    await call.finish(
        usage=Usage(prompt_tokens=call.prompt_estimate) if estimated else usage,
        status="ok",
        http_status=200,
        estimated=estimated,
    )
    return json_response(data, headers=call.response_headers())


def body_of(payload: Any) -> dict:
    """The validated body as a plain dict, unknown fields included (passed through upstream)."""
    data = payload.model_dump(exclude_unset=True, exclude_none=False)
    if "messages" in data:
        data["messages"] = [{k: v for k, v in m.items() if v is not None} for m in data["messages"]]
    return data


def reject_upstream_overrides(body: dict) -> None:
    """The client never chooses the upstream: no base URL or credentials in the body (SSRF)."""
    for name in (
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "custom_llm_provider",
        "organization",
        "azure_endpoint",
        "extra_headers",
        "aws_access_key_id",
    ):
        if name in body:
            raise InvalidRequest(
                f"'{name}' cannot be set by clients; Sentinel chooses the upstream.",
                param=name,
                code="unsupported_parameter",
            )
