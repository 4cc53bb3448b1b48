"""The one NinjaAPI: Sentinel-key auth, and every error in the OpenAI envelope
(``{"error": {"message", "type", "param", "code"}}``) — Anthropic's on ``/v1/messages``."""

from __future__ import annotations

import json
import logging

from django.db import OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.renderers import BaseRenderer
from ninja.security import APIKeyHeader, HttpBearer

from gateway.errors import ANTHROPIC_TYPES, AuthenticationFailed, GatewayError
from sentinel_site.logging import request_context
from tenants.keycache import KeyRejected, api_key_for_token
from tenants.models import ApiKey

log = logging.getLogger("sentinel.api")


class JsonRenderer(BaseRenderer):
    media_type = "application/json"

    def render(self, request, data, *, response_status):
        return json.dumps(data, separators=(",", ":"), default=str)


def _log_context(key: ApiKey | None) -> ApiKey | None:
    """Name the tenant and the key's public id (never the secret) in this request's log lines."""
    context = request_context.get()
    if key is not None and context is not None:
        context["tenant"] = key.tenant.slug
        context["key"] = key.public_id
    return key


class BearerKeyAuth(HttpBearer):
    async def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        return _log_context(await api_key_for_token(token))


class HeaderKeyAuth(APIKeyHeader):
    param_name = "x-api-key"

    async def authenticate(self, request: HttpRequest, key: str | None) -> ApiKey | None:
        if not key:
            return None
        return _log_context(await api_key_for_token(key))


api = NinjaAPI(
    title="Sentinel gateway",
    version="1.0",
    description="OpenAI- and Anthropic-compatible LLM gateway. Authenticate with a Sentinel key.",
    urls_namespace="v1",
    auth=[BearerKeyAuth(), HeaderKeyAuth()],
    renderer=JsonRenderer(),
    docs_url="/docs",
    openapi_url="/openapi.json",
)


def error_response(
    request: HttpRequest,
    *,
    status: int,
    message: str,
    type_: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    if request.path.startswith("/v1/messages"):
        body = {
            "type": "error",
            "error": {"type": ANTHROPIC_TYPES.get(status, "api_error"), "message": message},
        }
    else:
        body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    response = HttpResponse(json.dumps(body), status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response[name] = value
    return response


@api.exception_handler(GatewayError)
def on_gateway_error(request: HttpRequest, exc: GatewayError) -> HttpResponse:
    return error_response(
        request,
        status=exc.status,
        message=exc.message,
        type_=exc.type,
        code=exc.code,
        param=exc.param,
        headers=exc.headers,
    )


@api.exception_handler(KeyRejected)
def on_key_rejected(request: HttpRequest, exc: KeyRejected) -> HttpResponse:
    from gateway.security import auth_failed

    auth_failed(request, reason=exc.code)
    type_ = "authentication_error" if exc.status == 401 else "permission_error"
    return error_response(request, status=exc.status, message=str(exc), type_=type_, code=exc.code)


@api.exception_handler(AuthenticationError)
def on_missing_key(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    err = AuthenticationFailed(
        "You didn't provide an API key. Send it as 'Authorization: Bearer sk-sntl-…' or 'x-api-key'.",
        code="missing_api_key",
    )
    return on_gateway_error(request, err)


def _param(loc: list) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "payload", "query", "path")]
    return ".".join(parts) or None


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    first = exc.errors[0] if exc.errors else {}
    param = _param(list(first.get("loc", [])))
    msg = first.get("msg", "Invalid request")
    message = f"Invalid value for '{param}': {msg}" if param else f"Invalid request body: {msg}"
    return error_response(
        request,
        status=400,
        message=message,
        type_="invalid_request_error",
        param=param,
        code="invalid_value" if param else "invalid_body",
    )


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    type_ = "invalid_request_error" if exc.status_code < 500 else "api_error"
    return error_response(request, status=exc.status_code, message=str(exc), type_=type_)


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(request, status=404, message="Not found.", type_="not_found_error", code="not_found")


@api.exception_handler(OperationalError)
def on_database_unavailable(request: HttpRequest, exc: OperationalError) -> HttpResponse:
    # PostgreSQL restarting, or out of connections: a hot key needs no SQL, but a cold one does.
    # Transient, so 503 with Retry-After (the SDKs retry it), never a 500.
    log.warning("database unavailable in the gateway API: %s", exc.__class__.__name__)
    return error_response(
        request,
        status=503,
        message="Sentinel is temporarily unable to reach its database; retry shortly.",
        type_="api_error",
        code="service_unavailable",
        headers={"retry-after": "1"},
    )


@api.exception_handler(Exception)
def on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    log.exception("unhandled error in the gateway API")
    return error_response(
        request,
        status=500,
        message="Internal error; the request id identifies it in our logs.",
        type_="api_error",
        code="internal_error",
    )


api.add_router("/", "gateway.api.router")
api.add_router("/usage", "billing.api.router")
api.add_router("/audit", "audit.api.router")
