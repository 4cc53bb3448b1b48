from django.contrib import admin
from django.urls import include, path

from sentinel_site import health, metrics_view
from sentinel_site.api import api

urlpatterns = [
    path("v1/", api.urls),
    path("health/live", health.live, name="health_live"),
    path("health/ready", health.ready, name="health_ready"),
    path("metrics", metrics_view.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("t/<slug:tenant_slug>/costs/", include("billing.urls")),
    path("t/<slug:tenant_slug>/audit/", include("audit.urls")),
    path("", include("tenants.account_urls")),
    path("", include("tenants.urls")),
]
