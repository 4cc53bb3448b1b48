import time

import anthropic
import openai
import pytest

from billing.models import UsageEvent
from tenants.services import api_key_create


def drain_usage() -> None:
    from billing import services

    drain = getattr(services, "usage_spool_drain", None)
    if drain is not None:
        drain(max_seconds=5)


def usage_events(request_id: str, timeout: float = 10.0) -> list[UsageEvent]:
    """The ledger rows of one request, waiting for the spool to be drained."""
    deadline = time.monotonic() + timeout
    while True:
        drain_usage()
        rows = list(UsageEvent.objects.filter(request_id=request_id))
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


@pytest.fixture
def api_key(catalog, tenant, user):
    key, token = api_key_create(tenant=tenant, actor=user, name="sdk")
    key.token = token
    return key


@pytest.fixture
def client(gateway, api_key):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=api_key.token, max_retries=0, timeout=20)


@pytest.fixture
def aclient(gateway, api_key):
    return anthropic.Anthropic(base_url=gateway.url, api_key=api_key.token, max_retries=0, timeout=20)
