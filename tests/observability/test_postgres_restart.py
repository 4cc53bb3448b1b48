import uuid

import httpx
import pytest
from django.db import connection

from tenants.services import api_key_create

pytestmark = pytest.mark.django_db(transaction=True)


def drop_connections(application_name: str) -> int:
    """What a PostgreSQL restart does to a client: every server-side connection is gone. Limited to
    the live server's own connections (other test sessions share this database server)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
            [application_name],
        )
        return cursor.fetchone()[0]


def test_gateway_recovers_at_once_when_postgresql_drops_its_connections(
    live_server_factory, catalog, tenant, user, upstream
):
    name = f"sentinel-pg-{uuid.uuid4().hex[:8]}"
    server = live_server_factory(DATABASE_URL=f"{_database_url()}?application_name={name}")
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}

    def call(token: str) -> httpx.Response:
        return httpx.post(
            f"{server.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {token}"}, timeout=20
        )

    warm = [api_key_create(tenant=tenant, actor=user, name=f"warm-{i}")[1] for i in range(4)]
    assert {call(token).status_code for token in warm} == {200}  # uncached keys: SQL through the pool
    assert drop_connections(name) >= 1

    # Keys the server has cached need no SQL at all: unaffected.
    assert {call(token).status_code for token in warm} == {200}
    # New keys need the database: the pool must hand out live connections, not the dead ones.
    fresh = [api_key_create(tenant=tenant, actor=user, name=f"fresh-{i}")[1] for i in range(4)]
    assert [call(token).status_code for token in fresh] == [200] * 4
    assert httpx.get(f"{server.url}/health/ready", timeout=10).status_code == 200


def _database_url() -> str:
    from tests.conftest import server_env

    return server_env()["DATABASE_URL"]
