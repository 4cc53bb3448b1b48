from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
from decimal import Decimal

import pytest
from django.test import Client

from billing.usage import UsageRecord
from sentinel_site import redis as sredis
from tenants.models import Role
from tenants.services import api_key_create, membership_add
from tests.factories import UserFactory

_ids = itertools.count(1)


def usage(
    tenant,
    key,
    *,
    at: datetime,
    model: str = "gpt-test",
    prompt: int = 100,
    cached: int = 0,
    completion: int = 50,
    cost: int = 250,
    request_id: str | None = None,
    **extra,
) -> UsageRecord:
    return UsageRecord(
        request_id=request_id or f"req_test_{next(_ids):08d}",
        tenant_id=tenant.pk,
        api_key_id=key.pk if key is not None else None,
        model=model,
        created_at=at,
        provider=extra.pop("provider", "mock-openai"),
        route=extra.pop("route", f"mock-openai/{model}"),
        prompt_tokens=prompt,
        cached_tokens=cached,
        completion_tokens=completion,
        cost_micros=cost,
        adjustment_percent=extra.pop("adjustment_percent", Decimal(0)),
        **extra,
    )


def submit_all(records: list[UsageRecord]) -> None:
    """``usage_submit`` each record, concurrently, on one event loop (like a gateway process)."""
    from billing.services import usage_submit

    async def main() -> None:
        await asyncio.gather(*(usage_submit(r) for r in records))

    asyncio.run(main())
    sredis.reset_clients()  # the async client belongs to the loop that just closed


def make_key(tenant, actor, name: str, **kwargs):
    key, token = api_key_create(tenant=tenant, actor=actor, name=name, **kwargs)
    key.token = token
    return key


def console_for(tenant, role: str = Role.FINANCE) -> Client:
    user = UserFactory()
    membership_add(tenant=tenant, user=user, role=role)
    client = Client()
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def keys(tenant, user):
    return [make_key(tenant, user, name) for name in ("backend", "support-bot", "=cmd|' /C calc'!A0")]


@pytest.fixture
def other_keys(other_tenant, user):
    return [make_key(other_tenant, user, name) for name in ("theirs-1", "theirs-2")]


@pytest.fixture
def console(tenant):
    return console_for(tenant, Role.FINANCE)
