"""Websocket routes (served by Channels through sentinel_site.asgi)."""

from django.urls import path

from tenants.consumers import LiveMetricsConsumer

websocket_urlpatterns = [
    path("ws/t/<slug:tenant_slug>/live/", LiveMetricsConsumer.as_asgi(), name="live_metrics_ws"),
]
