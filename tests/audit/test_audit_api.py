from __future__ import annotations

import pytest

from audit.services import record
from tenants.services import api_key_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader(tenant):
    _, token = api_key_create(tenant=tenant, name="siem", scopes=["audit:read"])
    return {"Authorization": f"Bearer {token}"}


def test_list_returns_only_the_keys_tenant_newest_first(client, tenant, other_tenant, reader):
    record(tenant=tenant, action="member.added", target_label="ann@tenant-a.test")
    record(tenant=other_tenant, action="member.added", target_label="their@tenant-b.test")
    response = client.get("/v1/audit", headers=reader)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [e["action"] for e in body["data"]] == ["member.added", "api_key.created"]
    assert [e["seq"] for e in body["data"]] == [2, 1]
    assert "their@tenant-b.test" not in response.content.decode()
    assert body["has_more"] is False and body["next_cursor"] is None
    first = body["data"][0]
    assert first["object"] == "audit.event"
    assert first["created_at"].endswith("+00:00") and "T" in first["created_at"]
    assert len(first["hash"]) == 64


def test_list_filters_and_paginates_with_a_cursor(client, tenant, reader):
    for i in range(5):
        record(tenant=tenant, action="auth.failed", metadata={"reason": "invalid_api_key", "i": i})
    page = client.get("/v1/audit", {"action": "auth.failed", "limit": 2}, headers=reader).json()
    assert [e["metadata"]["i"] for e in page["data"]] == [4, 3]
    assert page["has_more"] is True
    rest = client.get(
        "/v1/audit", {"action": "auth.failed", "limit": 10, "cursor": page["next_cursor"]}, headers=reader
    ).json()
    assert [e["metadata"]["i"] for e in rest["data"]] == [2, 1, 0]
    assert rest["has_more"] is False
    text = client.get("/v1/audit", {"q": "invalid_api"}, headers=reader).json()
    assert len(text["data"]) == 5


def test_get_one_event(client, tenant, reader):
    event = record(tenant=tenant, action="budget.changed", before={"budget_usd": "1"}, after={"budget_usd": "2"})
    body = client.get(f"/v1/audit/{event.pk}", headers=reader).json()
    assert (body["id"], body["action"], body["before"], body["after"]) == (
        event.pk,
        "budget.changed",
        {"budget_usd": "1"},
        {"budget_usd": "2"},
    )


def test_another_tenants_event_is_404_in_the_error_envelope(client, other_tenant, reader):
    theirs = record(tenant=other_tenant, action="budget.changed")
    response = client.get(f"/v1/audit/{theirs.pk}", headers=reader)
    assert response.status_code == 404
    assert response.json()["error"] == {
        "message": "Not found.",
        "type": "not_found_error",
        "param": None,
        "code": "not_found",
    }


@pytest.mark.parametrize("path", ["/v1/audit", "/v1/audit/1"])
def test_a_key_without_the_audit_scope_gets_403(client, tenant, path):
    _, token = api_key_create(tenant=tenant, name="app", scopes=["usage:read"])
    response = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "message": "This API key lacks the 'audit:read' scope.",
            "type": "permission_error",
            "param": None,
            "code": "missing_scope",
        }
    }


def test_without_a_key_the_answer_is_401(client):
    response = client.get("/v1/audit")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


@pytest.mark.parametrize(
    ("params", "param"),
    [({"cursor": "nope"}, "cursor"), ({"limit": 500}, "limit"), ({"q": "ab"}, "q"), ({"since": "yesterday"}, "since")],
)
def test_bad_parameters_are_400_in_the_error_envelope(client, reader, params, param):
    response = client.get("/v1/audit", params, headers=reader)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
