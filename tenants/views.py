"""The HTMX console: thin views that parse, call one service or selector, and render.

Roles are enforced here with ``tenant_required(<role set>)`` (templates only hide what a role
cannot do). Partials are named ``{% partialdef %}`` blocks of the page template, picked by the view.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from tenants import selectors, services
from tenants.decorators import MANAGE_KEYS, MANAGE_MEMBERS, MANAGE_SETTINGS, OWNER_ONLY, READ, tenant_required
from tenants.errors import InvalidInvitation, LastOwner, TenantsError
from tenants.forms import (
    SETTINGS_SECTIONS,
    AcceptInvitationForm,
    ApiKeyForm,
    ApiKeyRotateForm,
    ConsolePasswordChangeForm,
    ConsoleSetPasswordForm,
    InviteForm,
    MemberRoleForm,
    ModelsSettingsForm,
    PlatformTenantStatusForm,
    ThrottledAuthenticationForm,
    apply_validation_error,
)
from tenants.models import ApiKey, Membership, Role, Tenant

KEYS_PER_PAGE = 20
MEMBERS_PER_PAGE = 50
TENANTS_PER_PAGE = 50


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails
    tenant: Tenant
    membership: Membership


# --------------------------------------------------------------------------- helpers
def _render_fragments(
    request: HttpRequest, template: str, names: list[str], context: dict[str, Any], *, status: int = 200
) -> HttpResponse:
    """The first partial replaces the htmx target; the others and the flash messages swap out of band."""
    parts = [
        render_to_string(f"{template}#{name}", {**context, "oob": index > 0}, request)
        for index, name in enumerate(names)
    ]
    parts.append(render_to_string("console/_messages.html", {"oob": True}, request))
    return HttpResponse("".join(parts), status=status)


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


def _catalog_model_names() -> list[str]:
    # The console composes apps at the interface: the catalog belongs to the gateway app.
    from gateway.models import Model

    return list(Model.objects.filter(enabled=True).order_by("name").values_list("name", flat=True))


def _key_spend(tenant: Tenant, keys: list[ApiKey]) -> dict[int, int]:
    from billing.key_spend import key_spend_this_period

    return key_spend_this_period(tenant=tenant, keys=keys) if keys else {}


def _can(request: HtmxHttpRequest, roles: frozenset[str]) -> bool:
    return request.membership.role in roles


def platform_operator_required(view):
    @login_required
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_superuser:
            raise PermissionDenied("Platform operators only")
        return view(request, *args, **kwargs)

    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    wrapper.platform_only = True  # type: ignore[attr-defined]
    return wrapper


# --------------------------------------------------------------------------- account
class ThrottledLoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "registration/password_change_form.html"
    form_class = ConsolePasswordChangeForm
    success_url = reverse_lazy("password_change_done")

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "request": self.request}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["must_change"] = selectors.user_must_change_password(user=self.request.user)
        return context


class PasswordResetView(auth_views.PasswordResetView):
    template_name = "registration/password_reset_form.html"
    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "registration/password_reset_confirm.html"
    form_class = ConsoleSetPasswordForm


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    memberships = selectors.membership_list_for_user(user=request.user)
    if len(memberships) == 1 and not request.user.is_superuser:
        return redirect("tenants:overview", tenant_slug=memberships[0].tenant.slug)
    return render(request, "tenants/home.html", {"memberships": memberships})


@login_required
@require_GET
def tenant_switch(request: HttpRequest) -> HttpResponse:
    membership = selectors.membership_for_slug(user=request.user, tenant_slug=request.GET.get("tenant", ""))
    if membership is None:
        raise Http404("No such tenant")
    return redirect("tenants:overview", tenant_slug=membership.tenant.slug)


# --------------------------------------------------------------------------- overview and live metrics
@tenant_required(READ)
@require_GET
def overview(request: HtmxHttpRequest) -> HttpResponse:
    from billing.key_spend import tenant_today_summary

    summary = tenant_today_summary(tenant=request.tenant)
    chart = {
        "labels": summary.hours,
        "series": [
            {"label": "Requests", "values": summary.hourly_requests},
            {"label": "Errors", "values": summary.hourly_errors, "color": "#d92d20"},
        ],
        "kind": "bar",
        "format": "int",
        "xLabel": "Hour",
    }
    return render(
        request,
        "tenants/overview.html",
        {
            "tenant": request.tenant,
            "summary": summary,
            "chart_json": json.dumps(chart) if summary.requests else json.dumps({"labels": [], "series": []}),
            "key_counts": selectors.api_key_counts(tenant=request.tenant),
            "can_manage_keys": _can(request, MANAGE_KEYS),
        },
    )


EMPTY_CHART = json.dumps({"labels": [], "series": []})


def live_context(tenant: Tenant) -> dict[str, Any]:
    """The live-metrics fragment's context (shared by the polling view and the websocket consumer)."""
    from gateway.live import live_snapshot

    return {
        "tenant": tenant,
        "snap": live_snapshot(tenant_id=tenant.pk, window_seconds=10),
        "snap60": live_snapshot(tenant_id=tenant.pk, window_seconds=60),
        "updated_at": timezone.now(),
        "chart_json": EMPTY_CHART,
    }


@tenant_required(READ)
@require_GET
def live(request: HtmxHttpRequest) -> HttpResponse:
    context = live_context(request.tenant)
    context["ws_path"] = f"/ws/t/{request.tenant.slug}/live/"
    return render(request, "tenants/live.html", context)


@tenant_required(READ)
@require_GET
def live_fragment(request: HtmxHttpRequest) -> HttpResponse:
    """Polling fallback: the same fragment the websocket pushes."""
    return render(request, "tenants/live.html#live-metrics", live_context(request.tenant))


# --------------------------------------------------------------------------- API keys
def _key_filters(request: HttpRequest) -> dict[str, str]:
    source = request.POST if request.method == "POST" else request.GET
    status = source.get("status", "")
    return {
        "q": source.get("q", "").strip()[:100],
        "status": status if status in selectors.KEY_STATUSES else "",
        "page": source.get("page", "1"),
    }


def _keys_context(request: HtmxHttpRequest, **extra: Any) -> dict[str, Any]:
    filters = _key_filters(request)
    keys = selectors.api_key_list(tenant=request.tenant, search=filters["q"], status=filters["status"])
    page = Paginator(keys, KEYS_PER_PAGE).get_page(filters["page"])
    rows = list(page.object_list)
    query = "&".join(f"{k}={v}" for k, v in (("q", filters["q"]), ("status", filters["status"])) if v)
    context = {
        "tenant": request.tenant,
        "page": page,
        "keys": rows,
        "spend": _key_spend(request.tenant, rows),
        "filters": filters,
        "filter_query": query,
        "any_keys": bool(rows) or ApiKey.objects.filter(tenant=request.tenant).exists(),
        "can_manage_keys": _can(request, MANAGE_KEYS),
        "now": timezone.now(),
        "panel": "",
        "keys_url": reverse("tenants:keys", args=[request.tenant.slug]),
    }
    context.update(extra)
    return context


@tenant_required(READ)
@require_GET
def keys(request: HtmxHttpRequest) -> HttpResponse:
    context = _keys_context(request)
    if request.htmx and request.htmx.target in ("key-table", "key-panel"):
        # "key-panel": Cancel / Done close the panel (the secret is gone from the page for good)
        return render(request, f"tenants/keys.html#{request.htmx.target}", context)
    return render(request, "tenants/keys.html", context)


def _key_panel_response(request: HtmxHttpRequest, *, status: int = 200, table: bool = False, **panel: Any):
    """The key panel as a fragment (htmx) or the whole keys page with the panel open (no JS)."""
    context = _keys_context(request, **panel)
    if request.htmx:
        names = ["key-panel", "key-table"] if table else ["key-panel"]
        response = _render_fragments(request, "tenants/keys.html", names, context, status=status)
    else:
        response = render(request, "tenants/keys.html", context, status=status)
    return _no_store(response) if panel.get("secret") else response


@tenant_required(MANAGE_KEYS)
@require_http_methods(["GET", "POST"])
def api_key_create(request: HtmxHttpRequest) -> HttpResponse:
    form = ApiKeyForm(request.POST or None, tenant=request.tenant, model_choices=_catalog_model_names())
    if request.method == "POST" and form.is_valid():
        try:
            key, secret = services.api_key_create(
                tenant=request.tenant, actor=request.user, request=request, **form.to_changes()
            )
        except ValidationError as error:
            apply_validation_error(form, error)
        else:
            messages.success(request, f"Key “{key.name}” created. Copy the secret now: it is shown only once.")
            return _key_panel_response(request, table=True, panel="secret", secret=secret, secret_key=key)
    status = 422 if form.errors else 200
    return _key_panel_response(request, status=status, panel="create", form=form)


def _get_key(request: HtmxHttpRequest, key_id: int) -> ApiKey:
    try:
        return selectors.api_key_get(tenant=request.tenant, key_id=key_id)
    except ObjectDoesNotExist:
        raise Http404("No such key") from None


@tenant_required(MANAGE_KEYS)
@require_http_methods(["GET", "POST"])
def api_key_edit(request: HtmxHttpRequest, key_id: int) -> HttpResponse:
    key = _get_key(request, key_id)
    initial = ApiKeyForm.initial_for(key, request.tenant)
    models = sorted(set(_catalog_model_names()) | set(key.allowed_models))
    form = ApiKeyForm(request.POST or None, initial=initial, tenant=request.tenant, model_choices=models)
    if request.method == "POST" and form.is_valid():
        try:
            key = services.api_key_update(
                tenant=request.tenant, key_id=key.pk, actor=request.user, request=request, **form.to_changes()
            )
        except ValidationError as error:
            apply_validation_error(form, error)
        else:
            messages.success(request, f"Key “{key.name}” saved.")
            if request.htmx:
                return _render_fragments(
                    request, "tenants/keys.html", ["key-panel", "key-table"], _keys_context(request)
                )
            return redirect("tenants:keys", tenant_slug=request.tenant.slug)
    status = 422 if form.errors else 200
    return _key_panel_response(request, status=status, panel="edit", form=form, edit_key=key)


@tenant_required(MANAGE_KEYS)
@require_http_methods(["GET", "POST"])
def api_key_rotate(request: HtmxHttpRequest, key_id: int) -> HttpResponse:
    key = _get_key(request, key_id)
    form = ApiKeyRotateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            key, secret = services.api_key_rotate(
                tenant=request.tenant, key_id=key.pk, actor=request.user, grace=form.grace_delta(), request=request
            )
        except TenantsError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Key “{key.name}” rotated. Copy the new secret now: it is shown only once.")
            return _key_panel_response(request, table=True, panel="secret", secret=secret, secret_key=key, rotated=True)
    status = 422 if form.errors else 200
    return _key_panel_response(request, status=status, panel="rotate", form=form, edit_key=key)


@tenant_required(MANAGE_KEYS)
@require_POST
def api_key_revoke(request: HtmxHttpRequest, key_id: int) -> HttpResponse:
    key = _get_key(request, key_id)
    key = services.api_key_revoke(tenant=request.tenant, key_id=key.pk, actor=request.user, request=request)
    messages.success(request, f"Key “{key.name}” revoked. Requests with it are refused from now on.")
    if request.htmx:
        return _render_fragments(request, "tenants/keys.html", ["key-table", "key-panel"], _keys_context(request))
    return redirect("tenants:keys", tenant_slug=request.tenant.slug)


# --------------------------------------------------------------------------- members
def _members_context(request: HtmxHttpRequest, **extra: Any) -> dict[str, Any]:
    page = Paginator(selectors.membership_list(tenant=request.tenant), MEMBERS_PER_PAGE).get_page(
        request.GET.get("page", "1")
    )
    rows = list(page.object_list)
    can_manage = _can(request, MANAGE_MEMBERS)
    row_errors = extra.pop("row_errors", {})
    context = {
        "tenant": request.tenant,
        "page": page,
        "rows": [
            {
                "m": m,
                "form": MemberRoleForm(initial={"role": m.role}, auto_id=f"id_member_{m.pk}_%s"),
                "error": row_errors.get(m.pk, ""),
                "is_me": m.user_id == request.user.pk,
            }
            for m in rows
        ],
        "owner_count": selectors.owner_count(tenant=request.tenant),
        "can_manage_members": can_manage,
        "invite_form": InviteForm() if can_manage else None,
        "roles": Role.choices,
    }
    context.update(extra)
    return context


@tenant_required(READ)
@require_GET
def members(request: HtmxHttpRequest) -> HttpResponse:
    return render(request, "tenants/members.html", _members_context(request))


@tenant_required(MANAGE_MEMBERS)
@require_POST
def member_invite(request: HtmxHttpRequest) -> HttpResponse:
    form = InviteForm(request.POST)
    if form.is_valid():
        email, role = form.cleaned_data["email"], form.cleaned_data["role"]
        services.member_invite(
            tenant=request.tenant,
            email=email,
            role=role,
            actor=request.user,
            request=request,
            link_for=lambda token: request.build_absolute_uri(reverse("tenants:invitation_accept", args=[token])),
        )
        messages.success(request, f"Invitation sent to {email} as {Role(role).label.lower()}.")
        if not request.htmx:
            return redirect("tenants:members", tenant_slug=request.tenant.slug)
        form = InviteForm()
    context = _members_context(request, invite_form=form)
    status = 422 if form.errors else 200
    if request.htmx:
        return _render_fragments(request, "tenants/members.html", ["invite-card"], context, status=status)
    return render(request, "tenants/members.html", context, status=status)


def _get_membership(request: HtmxHttpRequest, membership_id: int) -> Membership:
    try:
        return selectors.membership_get(tenant=request.tenant, membership_id=membership_id)
    except ObjectDoesNotExist:
        raise Http404("No such member") from None


def _members_table_response(request: HtmxHttpRequest, *, status: int = 200, **extra: Any) -> HttpResponse:
    context = _members_context(request, **extra)
    if request.htmx:
        return _render_fragments(request, "tenants/members.html", ["member-table"], context, status=status)
    return render(request, "tenants/members.html", context, status=status)


@tenant_required(MANAGE_MEMBERS)
@require_POST
def member_role(request: HtmxHttpRequest, membership_id: int) -> HttpResponse:
    membership = _get_membership(request, membership_id)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        return _members_table_response(request, status=422, row_errors={membership.pk: "Choose a valid role."})
    try:
        updated = services.membership_set_role(
            tenant=request.tenant,
            membership_id=membership.pk,
            role=form.cleaned_data["role"],
            actor=request.user,
            request=request,
        )
    except LastOwner as error:
        return _members_table_response(request, status=422, row_errors={membership.pk: f"{error}."})
    messages.success(request, f"{updated.user.email} is now {Role(updated.role).label.lower()}.")
    if updated.user_id == request.user.pk and updated.role not in MANAGE_MEMBERS:
        # demoted themselves: the members page no longer allows edits
        return (
            HttpResponseClientRedirect(reverse("tenants:members", args=[request.tenant.slug]))
            if request.htmx
            else redirect("tenants:members", tenant_slug=request.tenant.slug)
        )
    if not request.htmx:
        return redirect("tenants:members", tenant_slug=request.tenant.slug)
    return _members_table_response(request)


@tenant_required(MANAGE_MEMBERS)
@require_POST
def member_remove(request: HtmxHttpRequest, membership_id: int) -> HttpResponse:
    membership = _get_membership(request, membership_id)
    try:
        services.membership_remove(
            tenant=request.tenant, membership_id=membership.pk, actor=request.user, request=request
        )
    except LastOwner as error:
        return _members_table_response(request, status=422, row_errors={membership.pk: f"{error}."})
    messages.success(request, f"{membership.user.email} no longer has access to {request.tenant.name}.")
    if membership.user_id == request.user.pk:
        target = reverse("home")
        return HttpResponseClientRedirect(target) if request.htmx else redirect(target)
    if not request.htmx:
        return redirect("tenants:members", tenant_slug=request.tenant.slug)
    return _members_table_response(request)


@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Accept an emailed invitation: signed-in users join at once; a new address first picks a password."""
    try:
        invitation = services.invitation_read(token=token)
    except InvalidInvitation as error:
        return render(request, "tenants/invitation.html", {"error": str(error)}, status=400)
    user = request.user
    account_exists = not user.is_authenticated and selectors.user_exists(email=invitation.email)
    form = None
    if not user.is_authenticated and not account_exists:
        form = AcceptInvitationForm(request.POST or None)
    error = ""
    if request.method == "POST":
        try:
            if user.is_authenticated:
                services.invitation_accept(token=token, user=user, request=request)
                messages.success(request, f"Welcome to {invitation.tenant.name}.")
                return redirect("tenants:overview", tenant_slug=invitation.tenant.slug)
            if form is not None and form.is_valid():
                try:
                    new_user, _ = services.invitation_accept_new_user(
                        token=token, password=form.cleaned_data["password1"], request=request
                    )
                except ValidationError as problem:
                    apply_validation_error(form, ValidationError({"password1": problem.messages}))
                else:
                    auth_login(request, new_user, backend="django.contrib.auth.backends.ModelBackend")
                    messages.success(request, f"Welcome to {invitation.tenant.name}.")
                    return redirect("tenants:overview", tenant_slug=invitation.tenant.slug)
        except InvalidInvitation as problem:
            error = str(problem)
    context = {
        "invitation": invitation,
        "role_label": Role(invitation.role).label,
        "form": form,
        "account_exists": account_exists,
        "error": error,
        "login_url": f"{reverse('login')}?next={request.path}",
    }
    failed = bool(error) or (form is not None and form.is_bound and bool(form.errors))
    return render(request, "tenants/invitation.html", context, status=422 if failed else 200)


# --------------------------------------------------------------------------- tenant settings
def _section_form(section: str, tenant: Tenant, data: Any = None):
    form_class = SETTINGS_SECTIONS[section]
    kwargs: dict[str, Any] = {"initial": form_class.initial_from(tenant), "prefix": section}
    if form_class is ModelsSettingsForm:
        kwargs["model_choices"] = _catalog_model_names()
    return form_class(data, **kwargs)


@tenant_required(READ)
@require_GET
def settings_page(request: HtmxHttpRequest) -> HttpResponse:
    can_manage = _can(request, MANAGE_SETTINGS)
    sections = [_section_form(name, request.tenant) for name in SETTINGS_SECTIONS]
    return render(
        request,
        "tenants/settings.html",
        {
            "tenant": request.tenant,
            "sections": sections,
            "can_manage_settings": can_manage,
            "is_owner": _can(request, OWNER_ONLY),
            "has_webhook_secret": bool(request.tenant.alert_webhook_secret),
        },
    )


@tenant_required(MANAGE_SETTINGS)
@require_POST
def settings_section(request: HtmxHttpRequest, section: str) -> HttpResponse:
    if section not in SETTINGS_SECTIONS:
        raise Http404("No such settings section")
    form = _section_form(section, request.tenant, request.POST)
    tenant = request.tenant
    saved = False
    if form.is_valid():
        try:
            tenant = services.tenant_update(
                tenant=request.tenant, actor=request.user, request=request, **form.to_changes()
            )
        except ValidationError as error:
            apply_validation_error(form, error)
        else:
            saved = True
            form = _section_form(section, tenant)
    if not request.htmx:
        if saved:
            messages.success(request, f"{form.title} saved.")
            return redirect("tenants:settings", tenant_slug=request.tenant.slug)
        sections = [form if name == section else _section_form(name, tenant) for name in SETTINGS_SECTIONS]
        context = {
            "tenant": tenant,
            "sections": sections,
            "can_manage_settings": True,
            "is_owner": _can(request, OWNER_ONLY),
            "has_webhook_secret": bool(tenant.alert_webhook_secret),
        }
        return render(request, "tenants/settings.html", context, status=422)
    context = {
        "tenant": tenant,
        "form": form,
        "can_manage_settings": True,
        "saved": saved,
        "has_webhook_secret": bool(tenant.alert_webhook_secret),
    }
    return render(request, "tenants/settings.html#settings-section", context, status=200 if saved else 422)


@tenant_required(OWNER_ONLY)
@require_POST
def tenant_close(request: HtmxHttpRequest) -> HttpResponse:
    if request.POST.get("confirm_slug", "").strip() != request.tenant.slug:
        messages.error(request, f"Type the tenant's slug “{request.tenant.slug}” to confirm its deletion.")
        target = reverse("tenants:settings", args=[request.tenant.slug]) + "#danger-zone"
        return HttpResponseClientRedirect(target) if request.htmx else redirect(target)
    tenant = services.tenant_close(tenant=request.tenant, actor=request.user, request=request)
    messages.success(request, f"{tenant.name} was deleted: its keys are revoked and its members removed.")
    target = reverse("home")
    return HttpResponseClientRedirect(target) if request.htmx else redirect(target)


# --------------------------------------------------------------------------- platform operator
@platform_operator_required
@require_GET
def platform_tenants(request: HttpRequest) -> HttpResponse:
    from billing.key_spend import tenant_usage_since

    search, status = request.GET.get("q", "").strip()[:100], request.GET.get("status", "")
    page = Paginator(selectors.tenant_list_for_platform(search=search, status=status), TENANTS_PER_PAGE).get_page(
        request.GET.get("page", "1")
    )
    rows = list(page.object_list)
    month_start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    usage = tenant_usage_since(tenant_ids=[t.pk for t in rows], since=month_start)
    context = {
        "page": page,
        "rows": [{"t": t, "usage": usage[t.pk]} for t in rows],
        "q": search,
        "status": status,
        "month_start": month_start,
        "statuses": Tenant.Status.choices,
        "list_url": reverse("tenants:platform_tenants"),
    }
    if getattr(request, "htmx", False) and request.htmx.target == "tenant-table":
        return render(request, "tenants/platform_tenants.html#tenant-table", context)
    return render(request, "tenants/platform_tenants.html", context)


@platform_operator_required
@require_POST
def platform_tenant_status(request: HttpRequest, tenant_id: int) -> HttpResponse:
    try:
        tenant = selectors.tenant_get_for_platform(tenant_id=tenant_id)
    except ObjectDoesNotExist:
        raise Http404("No such tenant") from None
    form = PlatformTenantStatusForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a valid status.")
    else:
        tenant = services.tenant_set_status(
            tenant=tenant, status=form.cleaned_data["status"], actor=request.user, request=request
        )
        verb = "suspended: its keys are refused" if tenant.status == Tenant.Status.SUSPENDED else "reactivated"
        messages.success(request, f"{tenant.name} {verb}.")
    if getattr(request, "htmx", False):
        from billing.key_spend import tenant_usage_since

        month_start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        tenant = selectors.tenant_list_for_platform().get(pk=tenant.pk)
        usage = tenant_usage_since(tenant_ids=[tenant.pk], since=month_start)
        return _render_fragments(
            request, "tenants/platform_tenants.html", ["tenant-row"], {"row": {"t": tenant, "usage": usage[tenant.pk]}}
        )
    return redirect("tenants:platform_tenants")
