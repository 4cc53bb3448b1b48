"""Shapes shared by the billing reads: totals, breakdown rows, keyset cursors, key labels."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, fields
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from django.db.models import Sum
from django.db.models.functions import Coalesce

from billing.pricing import micros_to_usd
from tenants.models import ApiKey, Tenant

TOTAL_FIELDS = (
    "requests",
    "error_requests",
    "cache_hits",
    "estimated_requests",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cost_micros",
)
# aggregate aliases are prefixed: an annotation may not share a name with a model field
SUMS = {f"s_{name}": Coalesce(Sum(name), 0) for name in TOTAL_FIELDS}
MICRO_USD = Decimal("0.000001")


def tags_json(tags: dict | None) -> str:
    return json.dumps(tags, sort_keys=True, separators=(",", ":")) if tags else ""


def usd_float(micros: int) -> float:
    return float(micros_to_usd(micros))  # display only: chart coordinates


@dataclass(frozen=True, slots=True)
class Totals:
    requests: int = 0
    error_requests: int = 0
    cache_hits: int = 0
    estimated_requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost_micros: int = 0

    @classmethod
    def from_row(cls, row: dict[str, Any], prefix: str = "s_") -> Totals:
        return cls(**{name: int(row.get(prefix + name) or 0) for name in TOTAL_FIELDS})

    @classmethod
    def sum(cls, items: list[Totals]) -> Totals:
        return cls(**{name: sum(getattr(t, name) for t in items) for name in TOTAL_FIELDS})

    def __add__(self, other: Totals) -> Totals:
        return Totals(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def __sub__(self, other: Totals) -> Totals:
        return Totals(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in TOTAL_FIELDS}

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost_usd(self) -> Decimal:
        return micros_to_usd(self.cost_micros)

    @property
    def avg_cost_micros(self) -> int | None:
        return self.cost_micros // self.requests if self.requests else None

    @property
    def error_rate(self) -> float:
        return self.error_requests / self.requests if self.requests else 0.0


class GroupBy(StrEnum):
    DAY = "day"
    MODEL = "model"
    KEY = "key"
    TAG = "tag"


@dataclass(frozen=True, slots=True)
class CostRow:
    group: str  # the group's value: ISO day, model name, key public id ("" = no key), tag value ("" = untagged)
    label: str
    totals: Totals
    day: date | None = None
    api_key_id: int | None = None

    def share(self, whole: Totals) -> float:
        return self.totals.cost_micros / whole.cost_micros if whole.cost_micros else 0.0


@dataclass(frozen=True, slots=True)
class CostPage:
    rows: list[CostRow]
    next_cursor: str | None
    group_by: GroupBy
    tag_key: str | None = None


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, size: int) -> list[Any] | None:
    """The cursor's values, or None for a missing or malformed cursor (-> first page)."""
    if not cursor:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        return None
    return values if isinstance(values, list) and len(values) == size else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def time_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    """(created_at, id) of the last row of the previous page; None (first page) if tampered."""
    values = decode_cursor(cursor, 2)
    if values is None or not isinstance(values[0], str) or not _is_int(values[1]):
        return None
    try:
        at = datetime.fromisoformat(values[0])
    except ValueError:
        return None
    return (at, values[1]) if at.tzinfo is not None else None


def cost_cursor(cursor: str | None) -> tuple[int, str] | None:
    """(cost, group) of the last row of the previous page; None (first page) if tampered."""
    values = decode_cursor(cursor, 2)
    if values is None or not _is_int(values[0]) or not isinstance(values[1], str):
        return None
    return values[0], values[1]


def day_cursor(cursor: str | None) -> date | None:
    values = decode_cursor(cursor, 1)
    if values is None or not isinstance(values[0], str):
        return None
    try:
        return date.fromisoformat(values[0])
    except ValueError:
        return None


def api_key_labels(*, tenant: Tenant, ids: list[int] | None = None) -> dict[int, ApiKey]:
    keys = ApiKey.objects.filter(tenant=tenant)
    if ids is not None:
        keys = keys.filter(pk__in=ids)
    return {key.pk: key for key in keys.only("pk", "tenant_id", "name", "public_id", "last4")}


def api_key_get(*, tenant: Tenant, key_id: int) -> ApiKey:
    """The tenant's key ``key_id``; ``ApiKey.DoesNotExist`` for a missing or another tenant's key."""
    return ApiKey.objects.get(tenant=tenant, pk=key_id)
