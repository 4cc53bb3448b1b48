"""Every mutating console view and API operation writes exactly the audit events it should.

The mutating routes are discovered from the URL resolver: Django views whose method restriction
(``require_POST`` / ``require_http_methods``, found through their decorators) or class-based
handlers allow POST, PUT, PATCH or DELETE, views with no method restriction at all, and the
ninja API's non-GET operations. Each must be in ``ROUTES`` below with a recipe for a valid
request, or be exempted there with a reason, so a new route cannot escape the audit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django import forms
from django.contrib.auth.tokens import default_token_generator
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from audit.models import AuditEvent
from tenants import forms as tenant_forms
from tenants import services as tenant_services
from tenants.models import ApiKey, Membership, Role, Tenant
from tests.factories import MembershipFactory, TenantFactory, UserFactory

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PASSWORD = "correct horse battery"  # tests.factories.UserFactory
NEW_PASSWORD = "a brand new passphrase 42"


# --------------------------------------------------------------------------- discovery
def _cell(fn: Any, name: str) -> Any:
    code = getattr(fn, "__code__", None)
    if code is None or not fn.__closure__ or name not in code.co_freevars:
        return None
    return fn.__closure__[code.co_freevars.index(name)].cell_contents


def _closure_callables(fn: Any) -> Iterator[Any]:
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        if callable(value):
            yield value


def allowed_methods(view: Any) -> frozenset[str] | None:
    """The HTTP methods a Django view accepts; None when nothing restricts them."""
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        return frozenset(m.upper() for m in view_class.http_method_names if hasattr(view_class, m))
    stack, seen = [view], set()
    while stack:
        fn = stack.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        methods = _cell(fn, "request_method_list")
        if methods is not None:
            return frozenset(methods)
        stack.extend(_closure_callables(fn))
        if getattr(fn, "__wrapped__", None) is not None:
            stack.append(fn.__wrapped__)
    return None


def _walk(patterns, prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str, Any]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            ns = entry.namespace or ""
            if ns == "admin":
                continue  # Django's admin is for the platform operator's emergencies; see the report
            inner = f"{namespace}:{ns}" if namespace and ns else (ns or namespace)
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), inner)
        elif isinstance(entry, URLPattern):
            route = prefix + str(entry.pattern)
            name = f"{namespace}:{entry.name}" if namespace and entry.name else (entry.name or route)
            yield name, route, entry.callback


def mutating_routes() -> dict[str, str]:
    """key -> route, for every route that can change state."""
    found: dict[str, str] = {}
    for name, route, callback in _walk(get_resolver().url_patterns):
        path_view = _cell(callback, "self")
        if path_view is not None and hasattr(path_view, "operations"):  # a django-ninja operation
            for operation in path_view.operations:
                for method in set(operation.methods) & MUTATING:
                    found[f"api {method} /{route}"] = route
            continue
        methods = allowed_methods(callback)
        if methods is None or methods & MUTATING:
            found[name] = route
    return found


# --------------------------------------------------------------------------- the world a request runs in
@dataclass
class World:
    tenant: Tenant
    other: Tenant
    owner: Any
    viewer: Membership
    key: ApiKey
    operator: Any
    clients: dict[str, Client] = field(default_factory=dict)

    def client(self, user: Any | None = None) -> Client:
        client = Client()
        if user is not None:
            client.force_login(user)
        return client

    def url(self, name: str, *args: Any) -> str:
        return reverse(name, args=[self.tenant.slug, *args])


@dataclass
class Req:
    client: Client
    path: str
    data: dict[str, Any] = field(default_factory=dict)
    method: str = "post"


@dataclass
class Case:
    """``build`` prepares the world (its own audit events are not counted) and returns the request;
    ``expect`` lists (action, chain) of exactly the events the request must write."""

    build: Callable[[World], Req]
    expect: tuple[tuple[str, str], ...]
    label: str = ""


@dataclass
class Exempt:
    reason: str


def form_data(form: Any, **overrides: Any) -> dict[str, Any]:
    """What a browser would post for ``form`` as rendered (its initial values), plus ``overrides``."""
    data: dict[str, Any] = {}
    for bound in form:
        value = bound.value()
        if isinstance(bound.field.widget, forms.CheckboxInput):
            if value:
                data[bound.html_name] = "on"
            continue
        if isinstance(value, list | tuple):
            data[bound.html_name] = [str(v) for v in value]
        elif value is not None:
            data[bound.html_name] = bound.field.widget.format_value(value) or ""
    for name, value in overrides.items():
        key = f"{form.prefix}-{name}" if form.prefix else name
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def settings_case(section: str, **changes: Any) -> Case:
    def build(w: World) -> Req:
        form_class = tenant_forms.SETTINGS_SECTIONS[section]
        kwargs: dict[str, Any] = {"initial": form_class.initial_from(w.tenant), "prefix": section}
        if form_class is tenant_forms.ModelsSettingsForm:
            kwargs["model_choices"] = ["gpt-test", "claude-test"]
        data = form_data(form_class(**kwargs), **changes)
        return Req(w.client(w.owner), w.url("tenants:settings_section", section), data)

    action = "budget.changed" if set(changes) <= {"budget_usd"} else "tenant.settings_changed"
    return Case(build, ((action, "tenant"),), f"{section}:{','.join(changes)}")


def key_form_data(w: World, **overrides: Any) -> dict[str, Any]:
    form = tenant_forms.ApiKeyForm(
        initial=tenant_forms.ApiKeyForm.initial_for(w.key, w.tenant), tenant=w.tenant, model_choices=[]
    )
    return form_data(form, **overrides)


def invite(w: World, email: str) -> str:
    return tenant_services.member_invite(
        tenant=w.tenant, email=email, role=Role.FINANCE, actor=w.owner, link_for=lambda token: token
    )


def invitation_existing_user(w: World) -> Req:
    user = UserFactory(username="joiner@example.test")
    token = invite(w, user.email)
    return Req(w.client(user), reverse("tenants:invitation_accept", args=[token]))


def invitation_new_user(w: World) -> Req:
    token = invite(w, "newcomer@example.test")
    return Req(
        w.client(),
        reverse("tenants:invitation_accept", args=[token]),
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )


def password_reset_confirm(w: World) -> Req:
    client = w.client()
    uid = urlsafe_base64_encode(force_bytes(w.owner.pk))
    token = default_token_generator.make_token(w.owner)
    response = client.get(reverse("password_reset_confirm", args=[uid, token]))
    assert response.status_code == 302, response.status_code  # Django moves the token into the session
    return Req(client, response["Location"], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})


def rotate(w: World) -> Req:
    grace = tenant_forms.ApiKeyRotateForm().fields["grace"].choices[0][0]
    return Req(w.client(w.owner), w.url("tenants:api_key_rotate", w.key.pk), {"grace": grace})


DATA_PLANE = Exempt(
    "gateway data plane: each call is metered by its UsageEvent and request-log row, not an admin change; "
    "its security events (auth.failed, guardrail.*) are audited by gateway.security"
)

ROUTES: dict[str, list[Case] | Exempt] = {
    # ---- API keys
    "tenants:api_key_create": [
        Case(
            lambda w: Req(w.client(w.owner), w.url("tenants:api_key_create"), key_form_data(w, name="new-key")),
            (("api_key.created", "tenant"),),
        )
    ],
    "tenants:api_key_edit": [
        Case(
            lambda w: Req(w.client(w.owner), w.url("tenants:api_key_edit", w.key.pk), key_form_data(w, rpm="77")),
            (("api_key.updated", "tenant"),),
        ),
        Case(
            lambda w: Req(
                w.client(w.owner), w.url("tenants:api_key_edit", w.key.pk), key_form_data(w, budget_usd="12.50")
            ),
            (("budget.changed", "tenant"),),
            "budget",
        ),
    ],
    "tenants:api_key_rotate": [Case(rotate, (("api_key.rotated", "tenant"),))],
    "tenants:api_key_revoke": [
        Case(
            lambda w: Req(w.client(w.owner), w.url("tenants:api_key_revoke", w.key.pk)),
            (("api_key.revoked", "tenant"),),
        )
    ],
    # ---- members
    "tenants:member_invite": [
        Case(
            lambda w: Req(
                w.client(w.owner), w.url("tenants:member_invite"), {"email": "new@example.test", "role": "admin"}
            ),
            (("member.invited", "tenant"),),
        )
    ],
    "tenants:member_role": [
        Case(
            lambda w: Req(w.client(w.owner), w.url("tenants:member_role", w.viewer.pk), {"role": "admin"}),
            (("member.role_changed", "tenant"),),
        )
    ],
    "tenants:member_remove": [
        Case(
            lambda w: Req(w.client(w.owner), w.url("tenants:member_remove", w.viewer.pk)),
            (("member.removed", "tenant"),),
        )
    ],
    "tenants:invitation_accept": [
        Case(invitation_existing_user, (("member.added", "tenant"),), "signed-in user"),
        # Compound by design: a new account is created, joins, and is signed in.
        Case(
            invitation_new_user,
            (("user.created", "platform"), ("member.added", "tenant"), ("login.succeeded", "platform")),
            "new user",
        ),
    ],
    # ---- tenant settings, one case per section
    "tenants:settings_section": [
        settings_case("general", name="Renamed Tenant"),
        settings_case("limits", rpm="321"),
        settings_case("limits", budget_usd="99.00"),
        settings_case("models", allowed_models=["gpt-test"]),
        settings_case("guardrails", pii="block"),
        settings_case("cache", cache_ttl_seconds="60"),
        settings_case("alerts", alert_thresholds="50, 90"),
    ],
    "tenants:tenant_close": [
        Case(
            lambda w: Req(w.client(w.owner), w.url("tenants:tenant_close"), {"confirm_slug": w.tenant.slug}),
            (("tenant.deleted", "tenant"),),
        )
    ],
    "tenants:platform_tenant_status": [
        Case(
            lambda w: Req(
                w.client(w.operator),
                reverse("tenants:platform_tenant_status", args=[w.tenant.pk]),
                {"status": "suspended"},
            ),
            (("tenant.suspended", "tenant"),),
        )
    ],
    # ---- account
    "login": [
        Case(
            lambda w: Req(w.client(), reverse("login"), {"username": w.owner.username, "password": PASSWORD}),
            (("login.succeeded", "platform"),),
        ),
        Case(
            lambda w: Req(w.client(), reverse("login"), {"username": w.owner.username, "password": "wrong one!"}),
            (("login.failed", "platform"),),
            "wrong password",
        ),
    ],
    "logout": [Case(lambda w: Req(w.client(w.owner), reverse("logout")), (("logout.succeeded", "platform"),))],
    "password_change": [
        Case(
            lambda w: Req(
                w.client(w.owner),
                reverse("password_change"),
                {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
            ),
            (("user.password_changed", "platform"),),
        )
    ],
    "password_reset": Exempt(
        "asks for a reset email and changes nothing; the reset itself (password_reset_confirm) is audited"
    ),
    "password_reset_confirm": [Case(password_reset_confirm, (("user.password_reset", "platform"),))],
    # ---- audit exports (a download is recorded)
    "audit:events_export": [
        Case(
            lambda w: Req(w.client(w.owner), w.url("audit:events_export"), {"format": "csv"}),
            (("export.downloaded", "tenant"),),
        )
    ],
    "audit:requests_export": [
        Case(
            lambda w: Req(w.client(w.owner), w.url("audit:requests_export"), {"format": "jsonl"}),
            (("export.downloaded", "tenant"),),
        )
    ],
    # ---- not state changes
    "health_live": Exempt("liveness probe: answers any method, reads nothing"),
    "health_ready": Exempt("readiness probe: answers any method, pings the database and Redis"),
    "metrics": Exempt("Prometheus scrape endpoint: answers any method, reads counters"),
    "v1:openapi-json": Exempt("django-ninja's OpenAPI schema: answers any method, renders a document"),
    "v1:openapi-view": Exempt("django-ninja's API docs page: answers any method, renders a page"),
    "v1:api-root": Exempt("django-ninja's root of /v1/: answers any method, changes nothing"),
    # ---- the gateway's data plane (ninja)
    "api POST /v1/chat/completions": DATA_PLANE,
    "api POST /v1/messages": DATA_PLANE,
    "api POST /v1/embeddings": DATA_PLANE,
}


# --------------------------------------------------------------------------- tests
def test_every_mutating_route_is_in_the_table():
    found = mutating_routes()
    missing = sorted(set(found) - set(ROUTES))
    stale = sorted(set(ROUTES) - set(found))
    assert missing == [], f"mutating routes without an audit recipe in ROUTES: {missing}"
    assert stale == [], f"ROUTES lists routes that no longer exist or no longer mutate: {stale}"


def test_discovery_sees_through_decorators():
    routes = mutating_routes()
    assert "tenants:api_key_revoke" in routes  # tenant_required + require_POST
    assert "tenants:platform_tenant_status" in routes  # a wrapper without functools.wraps
    assert "tenants:keys" not in routes  # require_GET
    assert "audit:events" not in routes


CASES = [
    pytest.param(name, case, id=f"{name}{'[' + case.label + ']' if case.label else ''}")
    for name, entry in ROUTES.items()
    if isinstance(entry, list)
    for case in entry
]


@pytest.fixture
def world(db) -> World:
    tenant = TenantFactory(name="Tenant A", slug="tenant-a")
    other = TenantFactory(name="Tenant B", slug="tenant-b")
    owner = MembershipFactory(tenant=tenant, role=Role.OWNER, user=UserFactory(username="owner@a.test")).user
    viewer = MembershipFactory(tenant=tenant, role=Role.VIEWER, user=UserFactory(username="viewer@a.test"))
    MembershipFactory(tenant=other, role=Role.OWNER)
    key, _ = tenant_services.api_key_create(tenant=tenant, actor=owner, name="ci")
    operator = UserFactory(username="operator@sentinel.test", is_staff=True, is_superuser=True)
    from gateway.models import Model

    for name in ("gpt-test", "claude-test"):
        Model.objects.get_or_create(name=name)
    return World(tenant=tenant, other=other, owner=owner, viewer=viewer, key=key, operator=operator)


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous iterators")
@pytest.mark.parametrize(("name", "case"), CASES)
def test_mutating_route_writes_exactly_its_audit_events(world, name, case):
    request = case.build(world)
    last = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    response = getattr(request.client, request.method)(request.path, request.data)
    if response.streaming:
        b"".join(response)
    assert response.status_code in (200, 201, 204, 302), (response.status_code, response.content[:500])
    written = AuditEvent.objects.filter(id__gt=last).order_by("id")
    got = sorted((e.action, "platform" if e.tenant_id is None else e.tenant_id) for e in written)
    chains = {"platform": "platform", "tenant": world.tenant.pk}
    expected = sorted((action, chains[chain]) for action, chain in case.expect)
    assert got == expected
    assert not AuditEvent.objects.filter(id__gt=last, tenant=world.other).exists()
