from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from django.test import Client
from django.urls import URLPattern, reverse

from tenants import urls as tenant_urls
from tenants.models import Role
from tenants.services import api_key_create
from tests.console.state import tenant_state
from tests.factories import UserFactory

ALL = frozenset(Role.values)
OWNER_ADMIN = frozenset({Role.OWNER, Role.ADMIN})
OWNER = frozenset({Role.OWNER})

# The role table of the console (issue: owner everything; admin keys/limits/guardrails/cache/alerts;
# finance cost pages and budgets read-only; viewer read-only).
ROLE_TABLE = {
    "overview": ALL,
    "live": ALL,
    "live_fragment": ALL,
    "keys": ALL,
    "api_key_create": OWNER_ADMIN,
    "api_key_edit": OWNER_ADMIN,
    "api_key_rotate": OWNER_ADMIN,
    "api_key_revoke": OWNER_ADMIN,
    "members": ALL,
    "member_invite": OWNER,
    "member_role": OWNER,
    "member_remove": OWNER,
    "settings": ALL,
    "settings_section": OWNER_ADMIN,
    "tenant_close": OWNER,
}


@dataclass
class Case:
    name: str
    method: str = "get"
    data: dict = field(default_factory=dict)
    kwargs: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.method}-{self.name}-{'-'.join(str(v) for v in self.kwargs.values())}".rstrip("-")


CASES = [
    Case("overview"),
    Case("live"),
    Case("live_fragment"),
    Case("keys"),
    Case("members"),
    Case("settings"),
    Case("api_key_create"),
    Case("api_key_create", "post", {"name": "new-key", "budget_period": "month"}),
    Case("api_key_edit", kwargs={"key_id": "KEY"}),
    Case("api_key_edit", "post", {"name": "renamed", "budget_period": "day"}, {"key_id": "KEY"}),
    Case("api_key_rotate", kwargs={"key_id": "KEY"}),
    Case("api_key_rotate", "post", {"grace": "3600"}, {"key_id": "KEY"}),
    Case("api_key_revoke", "post", {}, {"key_id": "KEY"}),
    Case("member_invite", "post", {"email": "new@a.test", "role": "viewer"}),
    Case("member_role", "post", {"role": "admin"}, {"membership_id": "TARGET"}),
    Case("member_remove", "post", {}, {"membership_id": "TARGET"}),
    Case(
        "settings_section",
        "post",
        {
            "cache-cache_ttl_seconds": "60",
            "cache-request_log_retention_days": "30",
            "cache-audit_retention_days": "365",
        },
        {"section": "cache"},
    ),
    Case(
        "settings_section",
        "post",
        {"guardrails-pii": "redact", "guardrails-injection": "block", "guardrails-secrets": "flag"},
        {"section": "guardrails"},
    ),
    Case("tenant_close", "post", {"confirm_slug": "tenant-a"}),
]


@pytest.fixture
def world(tenant, member_of, their_key):
    owner = member_of(tenant, Role.OWNER)
    key, _ = api_key_create(tenant=tenant, actor=owner, name="backend")
    target = member_of(tenant, Role.VIEWER, username="target@a.test")
    return {"KEY": key.pk, "TARGET": target.memberships.get().pk}


def _url(case: Case, tenant, world) -> str:
    kwargs = {k: world.get(v, v) if isinstance(v, str) else v for k, v in case.kwargs.items()}
    return reverse(f"tenants:{case.name}", kwargs={"tenant_slug": tenant.slug, **kwargs})


def test_role_table_covers_every_tenant_console_view():
    tenant_views = {
        p.name: p.callback
        for p in tenant_urls.urlpatterns
        if isinstance(p, URLPattern) and "tenant_slug" in str(p.pattern)
    }
    assert set(tenant_views) == set(ROLE_TABLE)
    for name, view in tenant_views.items():
        assert view.allowed_roles == ROLE_TABLE[name], name
    assert {c.name for c in CASES} == set(ROLE_TABLE)


@pytest.mark.parametrize("role", Role.values)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_each_role_gets_200_or_403_per_the_role_table(case, role, tenant, member_of, world):
    user = member_of(tenant, role)
    client = Client(headers={"HX-Request": "true"})
    client.force_login(user)
    before = tenant_state(tenant)

    response = getattr(client, case.method)(_url(case, tenant, world), case.data)

    if role in ROLE_TABLE[case.name]:
        assert response.status_code == 200, response.content[:500]
    else:
        assert response.status_code == 403
        assert tenant_state(tenant) == before


def test_viewer_sees_no_mutating_controls(tenant, member_of, world, client_for):
    client = client_for(member_of(tenant, Role.VIEWER))
    pages = [reverse(f"tenants:{name}", args=[tenant.slug]) for name in ("overview", "keys", "members", "settings")]
    for page in pages:
        html = client.get(page).content.decode()
        assert "hx-post" not in html and 'method="post" action="/t/' not in html, page
        assert "New API key" not in html


def test_platform_pages_are_for_superusers_only(tenant, owner, client_for):
    listing = reverse("tenants:platform_tenants")
    suspend = reverse("tenants:platform_tenant_status", args=[tenant.pk])
    tenant_owner = client_for(owner)
    assert tenant_owner.get(listing).status_code == 403
    assert tenant_owner.post(suspend, {"status": "suspended"}).status_code == 403
    operator = client_for(UserFactory(is_superuser=True, is_staff=True))
    assert operator.get(listing).status_code == 200
    tenant.refresh_from_db()
    assert tenant.is_active
