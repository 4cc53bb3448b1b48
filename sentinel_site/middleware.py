"""The /v1 path's only middleware: async, no thread hop.

It assigns the request id (a valid client-supplied ``x-request-id`` is echoed), puts it in the log
context and sets it on every response, refuses oversized bodies (413) before they are read, and
answers CORS for the origins in ``SENTINEL_CORS_ORIGINS`` (none by default, never ``*``).
"""

from __future__ import annotations

import json
import re
import uuid

from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.http import HttpResponse

from gateway import metrics
from sentinel_site.logging import request_context

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{8,64}$")


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


class ApiRequestMiddleware:
    sync_capable = False
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        supplied = request.headers.get("x-request-id", "")
        request.request_id = supplied if _VALID_REQUEST_ID.match(supplied) else new_request_id()
        origin = request.headers.get("origin")
        cors = origin if origin and origin in settings.SENTINEL_CORS_ORIGINS else None
        if request.method == "OPTIONS" and cors:
            response = HttpResponse(status=204)
            response["access-control-allow-methods"] = "GET, POST, OPTIONS"
            response["access-control-allow-headers"] = (
                request.headers.get("access-control-request-headers") or "authorization, content-type, x-api-key"
            )
            response["access-control-max-age"] = "600"
        elif _too_large(request):
            response = _error(
                413,
                "The request body is too large.",
                "request_too_large",
                "request_too_large",
                anthropic=request.path.startswith("/v1/messages"),
            )
        else:
            # The access-log layer (serve.py) may already hold a context dict for this request:
            # fill that one, so its closing line carries the request id, tenant and key too.
            context = request_context.get()
            token = None
            if context is None:
                context = {}
                token = request_context.set(context)
            context["request_id"] = request.request_id
            metrics.active_requests.inc()
            try:
                response = await self.get_response(request)
            finally:
                metrics.active_requests.dec()
                if token is not None:
                    request_context.reset(token)
        if response.status_code in _PLAIN_ERRORS and not response.get("content-type", "").startswith(
            "application/json"
        ):
            # Django's own 404 (no such route) and ninja's 405 are HTML or plain text: clients of an
            # OpenAI-compatible API expect the JSON envelope on every error.
            message, type_, code = _PLAIN_ERRORS[response.status_code]
            allow = response.get("allow")
            response = _error(
                response.status_code,
                message.format(method=request.method, path=request.path),
                type_,
                code,
                anthropic=request.path.startswith("/v1/messages"),
            )
            if allow:
                response["allow"] = allow
        response["x-request-id"] = request.request_id
        if cors:
            response["access-control-allow-origin"] = cors
            response["access-control-expose-headers"] = EXPOSED
            response["vary"] = "Origin"
        return response


_PLAIN_ERRORS = {
    404: ("Unknown API route: {method} {path}.", "not_found_error", "not_found"),
    405: ("Method {method} is not allowed on {path}.", "invalid_request_error", "method_not_allowed"),
}

EXPOSED = ", ".join(
    [
        "x-request-id",
        "x-sentinel-cache",
        "x-sentinel-route",
        "retry-after",
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
    ]
)


def _too_large(request) -> bool:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0) > settings.SENTINEL_MAX_BODY_BYTES
    except ValueError:
        return False


def _error(status: int, message: str, type_: str, code: str, *, anthropic: bool) -> HttpResponse:
    if anthropic:
        body = {"type": "error", "error": {"type": type_, "message": message}}
    else:
        body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return HttpResponse(json.dumps(body), status=status, content_type="application/json")
