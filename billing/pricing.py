"""Prices in force and cost calculation.

Cost is computed in integer micro-dollars: ``tokens x USD-per-1M-tokens`` *is* micro-dollars, so
the only rounding is once per event (half-up), after the tenant's markup or discount.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.utils import timezone

from billing.models import Price, PriceAdjustment
from sentinel_site import bus
from sentinel_site.db import adb

HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class Quote:
    price_id: int
    input_per_mtok: Decimal
    cached_input_per_mtok: Decimal
    output_per_mtok: Decimal
    adjustment_percent: Decimal = Decimal(0)

    def cost_micros(self, *, prompt_tokens: int, cached_tokens: int = 0, completion_tokens: int = 0) -> int:
        cached = min(cached_tokens, prompt_tokens)
        raw = (
            (prompt_tokens - cached) * self.input_per_mtok
            + cached * self.cached_input_per_mtok
            + completion_tokens * self.output_per_mtok
        )
        if self.adjustment_percent:
            raw = raw * (HUNDRED + self.adjustment_percent) / HUNDRED
        return int(raw.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def micros_to_usd(micros: int) -> Decimal:
    return (Decimal(micros) / Decimal(1_000_000)).quantize(Decimal("0.000001"))


def usd_to_micros(usd: Decimal) -> int:
    return int((usd * 1_000_000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def price_in_force(*, model_name: str, at: datetime | None = None) -> Price | None:
    at = at or timezone.now()
    return Price.objects.filter(model__name=model_name, effective_from__lte=at).order_by("-effective_from").first()


def adjustment_in_force(*, tenant_id: int, model_id: int, at: datetime | None = None) -> Decimal:
    at = at or timezone.now()
    adj = (
        PriceAdjustment.objects.filter(tenant_id=tenant_id, effective_from__lte=at)
        .filter(model_id__in=[model_id])
        .order_by("-effective_from")
        .first()
        or PriceAdjustment.objects.filter(tenant_id=tenant_id, model__isnull=True, effective_from__lte=at)
        .order_by("-effective_from")
        .first()
    )
    return adj.percent if adj else Decimal(0)


def quote_for(*, tenant_id: int, model_name: str, at: datetime | None = None) -> Quote | None:
    """The price (and the tenant's adjustment) in force for ``model_name`` at ``at``; None if unpriced."""
    price = price_in_force(model_name=model_name, at=at)
    if price is None:
        return None
    return Quote(
        price.pk,
        price.input_per_mtok,
        price.cached_input_per_mtok,
        price.output_per_mtok,
        adjustment_in_force(tenant_id=tenant_id, model_id=price.model_id, at=at),
    )


class PriceBook:
    """In-process snapshot of prices and adjustments for the hot path (no SQL per request).

    Reloaded every ``refresh_seconds``; a price version with a future ``effective_from`` is
    already in the snapshot and takes effect on time."""

    def __init__(self, refresh_seconds: float = 30.0) -> None:
        self.refresh_seconds = refresh_seconds
        self._loaded_at = 0.0
        self._prices: dict[str, list[Price]] = {}
        self._adjustments: dict[int, list[PriceAdjustment]] = {}

    def _load(self) -> None:
        prices: dict[str, list[Price]] = {}
        for price in Price.objects.select_related("model").order_by("-effective_from"):
            prices.setdefault(price.model.name, []).append(price)
        adjustments: dict[int, list[PriceAdjustment]] = {}
        for adj in PriceAdjustment.objects.order_by("-effective_from"):
            adjustments.setdefault(adj.tenant_id, []).append(adj)
        self._prices, self._adjustments = prices, adjustments
        self._loaded_at = time.monotonic()

    def invalidate(self) -> None:
        self._loaded_at = 0.0

    async def aquote(self, *, tenant_id: int, model_name: str, at: datetime | None = None) -> Quote | None:
        if time.monotonic() - self._loaded_at > self.refresh_seconds:
            await adb(self._load)
        return self.quote(tenant_id=tenant_id, model_name=model_name, at=at)

    def quote(self, *, tenant_id: int, model_name: str, at: datetime | None = None) -> Quote | None:
        at = at or timezone.now()
        price = next((p for p in self._prices.get(model_name, ()) if p.effective_from <= at), None)
        if price is None:
            return None
        percent = Decimal(0)
        adjustments = [a for a in self._adjustments.get(tenant_id, ()) if a.effective_from <= at]
        specific = next((a for a in adjustments if a.model_id == price.model_id), None)
        general = next((a for a in adjustments if a.model_id is None), None)
        if specific or general:
            percent = (specific or general).percent
        return Quote(price.pk, price.input_per_mtok, price.cached_input_per_mtok, price.output_per_mtok, percent)


pricebook = PriceBook()


def _on_catalog_change(_: str) -> None:
    pricebook.invalidate()


bus.register("catalog", _on_catalog_change)
