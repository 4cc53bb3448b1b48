from __future__ import annotations

import pytest
from django.test import Client

from tenants.models import Role
from tenants.services import api_key_create
from tests.factories import MembershipFactory, UserFactory

PASSWORD = "correct horse battery"


@pytest.fixture
def member_of(db):
    def make(tenant, role: str, **user_fields):
        user = UserFactory(**user_fields)
        MembershipFactory(tenant=tenant, user=user, role=role)
        return user

    return make


@pytest.fixture
def client_for(db):
    def make(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def owner(tenant, member_of):
    return member_of(tenant, Role.OWNER)


@pytest.fixture
def console(owner, client_for) -> Client:
    return client_for(owner)


@pytest.fixture
def htmx(owner) -> Client:
    client = Client(headers={"HX-Request": "true"})
    client.force_login(owner)
    return client


@pytest.fixture
def their_key(other_tenant, member_of):
    """Another tenant's data, present in every console test and never visible."""
    their_owner = member_of(other_tenant, Role.OWNER, username="their-owner@b.test")
    key, _ = api_key_create(tenant=other_tenant, actor=their_owner, name="their-secret-key")
    return key


@pytest.fixture
def catalog_models(db):
    """Two enabled catalog models (plain rows: the console only lists their names)."""
    from gateway.models import Model

    Model.objects.create(name="gpt-test")
    Model.objects.create(name="claude-test")
    return ["claude-test", "gpt-test"]
