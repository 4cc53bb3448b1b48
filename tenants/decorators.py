"""Console access control: the tenant comes from the URL slug and the user's membership.

Roles are enforced here, in the view layer, never only in templates. "No such tenant" and "not
yours" give the same 404.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from tenants.models import Membership, Role

ALL_ROLES = frozenset(Role.values)
# Who may do what (views pass one of these sets to ``tenant_required``).
READ = ALL_ROLES
MANAGE_KEYS = frozenset({Role.OWNER, Role.ADMIN})
MANAGE_SETTINGS = frozenset({Role.OWNER, Role.ADMIN})
MANAGE_MEMBERS = frozenset({Role.OWNER})
READ_COSTS = frozenset({Role.OWNER, Role.ADMIN, Role.FINANCE})
READ_AUDIT = frozenset({Role.OWNER, Role.ADMIN, Role.FINANCE})
OWNER_ONLY = frozenset({Role.OWNER})


def tenant_required(roles: frozenset[str] = READ) -> Callable:
    """Resolve ``request.tenant`` and ``request.membership`` from the ``tenant_slug`` URL kwarg.

    Non-members get 404 (same as a missing tenant); members without one of ``roles`` get 403.
    """

    def decorator(view: Callable) -> Callable:
        @login_required
        @functools.wraps(view)
        def wrapper(request: HttpRequest, tenant_slug: str, *args, **kwargs):
            membership = (
                Membership.objects.select_related("tenant").filter(user=request.user, tenant__slug=tenant_slug).first()
            )
            if membership is None:
                raise Http404("No such tenant")
            if membership.role not in roles:
                raise PermissionDenied("Your role does not allow this action")
            request.tenant = membership.tenant
            request.membership = membership
            return view(request, *args, **kwargs)

        wrapper.allowed_roles = roles  # type: ignore[attr-defined]  # read by the per-role tests
        return wrapper

    return decorator
