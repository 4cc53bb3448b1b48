"""Money and ratio formatting for the cost pages (display only; amounts stay integer micros)."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal

from django import template

from billing.pricing import micros_to_usd

register = template.Library()
NONE = "\u2013"  # en dash: "no value"


def _grouped(amount: Decimal, places: int) -> str:
    quantum = Decimal(1).scaleb(-places)
    value = amount.quantize(quantum, rounding=ROUND_HALF_UP)
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.{places}f}"


@register.filter
def usd(micros: int | None) -> str:
    """Micro-dollars as dollars and cents: 12345678 -> "$12.35"."""
    if micros is None or micros == "":
        return NONE
    return _grouped(micros_to_usd(int(micros)), 2)


@register.filter
def usd_exact(micros: int | None) -> str:
    """Micro-dollars to the micro-dollar: 12345678 -> "$12.345678"."""
    if micros is None or micros == "":
        return NONE
    return _grouped(micros_to_usd(int(micros)), 6)


@register.filter
def usd_per_mtok(value: Decimal | None) -> str:
    if value is None:
        return NONE
    places = max(2, -value.normalize().as_tuple().exponent)
    return f"${value:,.{places}f}"


@register.filter
def percent(fraction: float | None, places: int = 1) -> str:
    if fraction is None:
        return NONE
    return f"{fraction * 100:.{int(places)}f}%"


@register.filter
def delta(fraction: float | None) -> str:
    """A relative change: 0.123 -> "+12.3%"."""
    if fraction is None:
        return NONE
    return f"{fraction * 100:+.1f}%"


@register.filter
def width_class(fraction: float | None) -> str:
    """A .w-NN utility class (5 % steps) for a CSP-safe meter fill."""
    if not fraction or fraction <= 0:
        return "w-0"
    return f"w-{min(100, max(5, round(fraction * 20) * 5))}"


@register.filter
def tags_label(tags: dict | None) -> str:
    if not tags:
        return ""
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))


@register.filter
def chart_json(spec: dict) -> str:
    """A chart spec for ``data-chart='…'`` (autoescaping makes it attribute-safe)."""
    return json.dumps(spec, separators=(",", ":"), default=str)


@register.filter
def share_of(row, whole) -> float:
    """A breakdown row's share of the period's cost (0..1)."""
    return row.share(whole)
