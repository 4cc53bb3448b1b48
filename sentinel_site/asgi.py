"""ASGI entry point: Channels' ProtocolTypeRouter.

HTTP goes to one of two Django handlers: the gateway API (``/v1``, ``/health``, ``/metrics``) runs
with a lean async middleware list (``SENTINEL_API_MIDDLEWARE``), the console with the full stack
(sessions, CSRF, messages, CSP). Websockets go to Channels consumers (live metrics).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sentinel_site.settings")

import django

django.setup()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402

from sentinel_site.routing import websocket_urlpatterns  # noqa: E402

API_PREFIXES = ("/v1/", "/v1", "/health/", "/metrics")


class ApiASGIHandler(ASGIHandler):
    """Django's ASGI handler with ``SENTINEL_API_MIDDLEWARE`` instead of ``MIDDLEWARE``."""

    def load_middleware(self, is_async: bool = False) -> None:
        # Runs once, at import, before any request: swapping the setting here is not racy.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.SENTINEL_API_MIDDLEWARE
        try:
            super().load_middleware(is_async=is_async)
        finally:
            settings.MIDDLEWARE = full


console_app = ASGIHandler()
api_app = ApiASGIHandler()


async def http_app(scope, receive, send):
    path = scope.get("path", "")
    if path.startswith(API_PREFIXES):
        return await api_app(scope, receive, send)
    return await console_app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
