"""Console middleware: the one-time password must be changed before anything else; htmx
requests that hit the sign-in redirect (expired session) reload the whole page instead of
swapping the login form into a fragment; the tenant timezone activated for rendering is reset."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, resolve_url
from django.urls import reverse
from django.utils import timezone
from django_htmx.http import HttpResponseClientRedirect

from tenants.selectors import user_must_change_password

# Pages a user with a one-time password may still reach.
EXEMPT_URL_NAMES = frozenset(
    {
        "password_change",
        "password_change_done",
        "logout",
        "login",
        "password_reset",
        "password_reset_done",
        "password_reset_confirm",
        "password_reset_complete",
    }
)


class ConsoleAccountMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            response = self.get_response(request)
        finally:
            timezone.deactivate()  # the console context processor activates the tenant's timezone
        if getattr(request, "htmx", False) and response.status_code == 302:
            login_url = resolve_url(settings.LOGIN_URL)
            if response["Location"].split("?", 1)[0] == login_url:
                return HttpResponseClientRedirect(response["Location"])
        return response

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> HttpResponse | None:
        match = getattr(request, "resolver_match", None)
        if match is None or match.url_name in EXEMPT_URL_NAMES:
            return None
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not user_must_change_password(user=user):
            return None
        target = reverse("password_change")
        if getattr(request, "htmx", False):
            return HttpResponseClientRedirect(target)
        return redirect(target)
