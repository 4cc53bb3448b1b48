"""/v1/usage schemas. Money is given twice: integer micro-dollars and a decimal string in USD."""

from __future__ import annotations

from datetime import date
from typing import Literal

from ninja import Schema
from pydantic import Field

TAG_KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class UsageQuery(Schema):
    start: date | None = Field(default=None, description="First day (tenant's timezone); default: 29 days before end")
    end: date | None = Field(default=None, description="Last day, inclusive; default: today")
    group_by: Literal["day", "model", "key", "tag"] = "day"
    tag_key: str | None = Field(default=None, pattern=TAG_KEY_PATTERN, description="Tag to group by (group_by=tag)")


class UsageTotalsOut(Schema):
    requests: int
    error_requests: int
    cache_hits: int
    estimated_requests: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    total_tokens: int
    cost_micros: int
    cost_usd: str


class UsageRowOut(UsageTotalsOut):
    day: date | None = None
    model: str | None = None
    key_id: str | None = None
    key_name: str | None = None
    tag_value: str | None = None


class UsageOut(Schema):
    object: Literal["usage"] = "usage"
    start: date
    end: date
    timezone: str
    group_by: str
    tag_key: str | None = None
    scope: Literal["tenant", "key"]
    data: list[UsageRowOut]
    total: UsageTotalsOut
