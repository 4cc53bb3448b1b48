"""Audit console URLs, mounted at ``t/<tenant_slug>/audit/`` (namespace ``audit``)."""

from django.urls import path

from audit import views

app_name = "audit"

urlpatterns = [
    path("", views.events, name="events"),
    path("<int:event_id>/", views.event_detail, name="event_detail"),
    path("export/", views.events_export, name="events_export"),
    path("requests/", views.requests, name="requests"),
    path("requests/export/", views.requests_export, name="requests_export"),
    path("requests/<str:request_id>/", views.request_detail, name="request_detail"),
]
