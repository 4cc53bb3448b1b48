from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from audit.models import AuditEvent
from tenants.models import Membership, Role, Tenant
from tests.factories import MembershipFactory, UserFactory


@pytest.fixture
def member(db) -> Callable[..., Membership]:
    def make(tenant: Tenant, role: str = Role.OWNER, email: str | None = None) -> Membership:
        user = UserFactory(username=email) if email else UserFactory()
        return MembershipFactory(tenant=tenant, user=user, role=role)

    return make


@pytest.fixture
def console(client: Client, tenant: Tenant, member) -> Client:
    """A client signed in as an owner of ``tenant``."""
    client.force_login(member(tenant, Role.OWNER, "owner@tenant-a.test").user)
    return client


@pytest.fixture
def chain_of() -> Callable[[Tenant | None], list[AuditEvent]]:
    def read(tenant: Tenant | None) -> list[AuditEvent]:
        return list(AuditEvent.objects.filter(tenant_id=getattr(tenant, "pk", None)).order_by("seq"))

    return read
