"""ASGI entry point: Channels' ProtocolTypeRouter.

HTTP goes to one of two Django handlers: the gateway API (``/v1``, ``/health``, ``/metrics``) runs
with a lean async middleware list (``SENTINEL_API_MIDDLEWARE``), the console with the full stack
(sessions, CSRF, messages, CSP). Websockets go to Channels consumers (live metrics).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sentinel_site.settings")

import django

django.setup()

import asyncio  # noqa: E402
from contextlib import closing  # noqa: E402

from asgiref.sync import SyncToAsync, sync_to_async  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core import signals  # noqa: E402
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.urls import set_script_prefix  # noqa: E402

from sentinel_site import embedded_beat  # noqa: E402
from sentinel_site.routing import websocket_urlpatterns  # noqa: E402

API_PREFIXES = ("/v1/", "/v1", "/health/", "/metrics")


class ApiASGIHandler(ASGIHandler):
    """Django's ASGI handler with ``SENTINEL_API_MIDDLEWARE`` instead of ``MIDDLEWARE``, and without
    the worker thread Django starts per request only to run its signal receivers."""

    def load_middleware(self, is_async: bool = False) -> None:
        # Runs once, at import, before any request: swapping the setting here is not racy.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.SENTINEL_API_MIDDLEWARE
        try:
            super().load_middleware(is_async=is_async)
        finally:
            settings.MIDDLEWARE = full

    async def handle(self, scope, receive, send):
        # Django's handle() (6.1), except where the request's signals run. Django sends
        # request_started with asend() and closes the response through sync_to_async(), so every
        # request started a thread of its own (ThreadSensitiveContext) for receivers that only act
        # on the calling thread's database connections and caches: a third of the gateway's CPU
        # under load (py-spy, loadtests/bench.py). The event loop's thread holds no connection, so
        # they run there at once; when the request did run sync code in its own thread (a key or
        # catalog lookup), the response is closed in that thread as Django does, so its
        # connection goes back to the pool.
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        with closing(body_file):
            set_script_prefix(get_script_prefix(scope))
            signals.request_started.send(sender=self.__class__, scope=scope)
            request, error_response = self.create_request(scope, body_file)
            if request is None:
                await self.send_response(error_response, send)
                await self.close_response(error_response)
                return

            # Django runs the view in a TaskGroup beside a disconnect listener and ends it by raising
            # an exception class it builds per request; a plain watcher task that cancels the
            # request when the client goes away does the same for less (README, "Performance").
            task = asyncio.current_task()
            disconnected = False

            async def watch_for_disconnect() -> None:
                nonlocal disconnected
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected = True
                    task.cancel()

            watcher = asyncio.get_running_loop().create_task(watch_for_disconnect())
            response = None
            try:
                response = await self.run_get_response(request)
                await self.send_response(response, send)
            except asyncio.CancelledError:
                # The client left (Django's RequestAborted): nothing more to send. Any other
                # cancellation (the server's shutdown) goes on.
                if not disconnected or task.uncancel() > 0:
                    raise
            finally:
                watcher.cancel()
            await self.close_response(response)

    @staticmethod
    async def close_response(response) -> None:
        context = SyncToAsync.thread_sensitive_context.get(None)
        used_a_thread = context is not None and context in SyncToAsync.context_to_thread_executor
        if response is None:
            if used_a_thread:
                await signals.request_finished.asend(sender=ApiASGIHandler)
            else:
                signals.request_finished.send(sender=ApiASGIHandler)
        elif used_a_thread:
            await sync_to_async(response.close)()
        else:
            response.close()  # sends request_finished


console_app = ASGIHandler()
api_app = ApiASGIHandler()


async def http_app(scope, receive, send):
    path = scope.get("path", "")
    if path.startswith(API_PREFIXES):
        return await api_app(scope, receive, send)
    return await console_app(scope, receive, send)


embedded_beat.start()  # only with the embedded default (no Redis): rollups, alerts, reconcile

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
