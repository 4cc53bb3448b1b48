"""/v1/audit schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from ninja import Schema
from pydantic import Field


class AuditQuery(Schema):
    action: str | None = Field(default=None, max_length=64, description="api_key.revoked, or a family: api_key")
    actor: str | None = Field(default=None, max_length=200, description="Actor id, or part of its label")
    target: str | None = Field(default=None, max_length=200, description="type:id, an id, or part of its label")
    since: datetime | None = Field(default=None, description="Events at or after this time (ISO 8601)")
    until: datetime | None = Field(default=None, description="Events before this time (ISO 8601)")
    q: str | None = Field(default=None, min_length=3, max_length=200, description="Free text over the metadata")
    cursor: str | None = Field(default=None, max_length=40, description="next_cursor of the previous page")
    limit: int = Field(default=50, ge=1, le=200)


class AuditEventOut(Schema):
    object: Literal["audit.event"] = "audit.event"
    id: int
    seq: int
    created_at: str = Field(description="ISO 8601, UTC")
    actor_type: str
    actor_id: str
    actor_label: str
    action: str
    target_type: str
    target_id: str
    target_label: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    metadata: dict[str, Any]
    ip: str | None
    user_agent: str
    request_id: str
    prev_hash: str
    hash: str

    @staticmethod
    def resolve_created_at(obj: Any) -> str:
        return obj.created_at.astimezone(UTC).isoformat()


class AuditListOut(Schema):
    object: Literal["list"] = "list"
    data: list[AuditEventOut]
    has_more: bool
    next_cursor: str | None
