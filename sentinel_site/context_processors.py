"""Template context for the console shell (tenant switcher, current tenant and role)."""

from __future__ import annotations

import zoneinfo
from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import SimpleLazyObject


def console(request: HttpRequest) -> dict[str, Any]:
    from tenants.models import Role
    from tenants.selectors import membership_list_for_user

    user = getattr(request, "user", None)
    membership = getattr(request, "membership", None)
    tenant = getattr(request, "tenant", None)
    if tenant is not None:
        # Tenant pages show times in the tenant's calendar (ConsoleAccountMiddleware resets it).
        timezone.activate(zoneinfo.ZoneInfo(tenant.timezone))
    return {
        # lazy: only pages that render the switcher pay for the query
        "console_memberships": SimpleLazyObject(
            lambda: membership_list_for_user(user=user) if user is not None else []
        ),
        "console_tenant": tenant,
        "console_role": membership.role if membership else "",
        "console_role_label": Role(membership.role).label if membership else "",
    }
