"""The gateway -> billing hand-off: one :class:`UsageRecord` per gateway request.

``gateway`` builds the record (tokens, cost already computed from the price book, attempts, route)
and calls :func:`billing.services.usage_submit` exactly once per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(slots=True)
class UsageRecord:
    request_id: str
    tenant_id: int
    api_key_id: int | None
    model: str
    created_at: datetime
    endpoint: str = "chat.completions"
    provider: str = ""
    route: str = ""
    attempts: int = 1
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost_micros: int = 0
    price_id: int | None = None
    adjustment_percent: Decimal = Decimal(0)
    status: str = "ok"
    http_status: int = 200
    latency_ms: int = 0
    ttft_ms: int | None = None
    estimated: bool = False
    cache_hit: bool = False
    stream: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    # Request-log metadata (audit's request log; retention per tenant, unlike the ledger).
    guardrail_flags: list[str] = field(default_factory=list)
    error_type: str = ""
    prompt_log: str = ""  # PII-redacted prompt text, only when the tenant opted in

    def as_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies every value, a measurable cost once per request.
        data = {name: getattr(self, name) for name in _FIELDS}
        data["created_at"] = self.created_at.isoformat()
        data["adjustment_percent"] = str(self.adjustment_percent)
        data["tags"] = dict(self.tags)
        data["guardrail_flags"] = list(self.guardrail_flags)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UsageRecord:
        data = dict(data)
        data["created_at"] = datetime.fromisoformat(data["created_at"])
        data["adjustment_percent"] = Decimal(str(data.get("adjustment_percent", "0")))
        return cls(**data)


_FIELDS = tuple(f.name for f in fields(UsageRecord))
