"""Console URLs of the tenants app (namespace ``tenants``). Sign-in and account pages are in
``tenants.account_urls`` (no namespace: Django's auth views reverse their own names)."""

from django.urls import path

from tenants import views

app_name = "tenants"

urlpatterns = [
    path("switch/", views.tenant_switch, name="switch"),
    path("invite/<str:token>/", views.invitation_accept, name="invitation_accept"),
    path("platform/tenants/", views.platform_tenants, name="platform_tenants"),
    path("platform/tenants/<int:tenant_id>/status/", views.platform_tenant_status, name="platform_tenant_status"),
    path("t/<slug:tenant_slug>/", views.overview, name="overview"),
    path("t/<slug:tenant_slug>/live/", views.live, name="live"),
    path("t/<slug:tenant_slug>/live/fragment/", views.live_fragment, name="live_fragment"),
    path("t/<slug:tenant_slug>/keys/", views.keys, name="keys"),
    path("t/<slug:tenant_slug>/keys/new/", views.api_key_create, name="api_key_create"),
    path("t/<slug:tenant_slug>/keys/<int:key_id>/edit/", views.api_key_edit, name="api_key_edit"),
    path("t/<slug:tenant_slug>/keys/<int:key_id>/rotate/", views.api_key_rotate, name="api_key_rotate"),
    path("t/<slug:tenant_slug>/keys/<int:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("t/<slug:tenant_slug>/members/", views.members, name="members"),
    path("t/<slug:tenant_slug>/members/invite/", views.member_invite, name="member_invite"),
    path("t/<slug:tenant_slug>/members/<int:membership_id>/role/", views.member_role, name="member_role"),
    path("t/<slug:tenant_slug>/members/<int:membership_id>/remove/", views.member_remove, name="member_remove"),
    path("t/<slug:tenant_slug>/settings/", views.settings_page, name="settings"),
    path("t/<slug:tenant_slug>/settings/<slug:section>/", views.settings_section, name="settings_section"),
    path("t/<slug:tenant_slug>/close/", views.tenant_close, name="tenant_close"),
]
