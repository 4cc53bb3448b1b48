"""Display helpers for the console (formatting only; no queries)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django import template

register = template.Library()

MICROS = Decimal(1_000_000)


def _money(value: Decimal) -> str:
    if value != 0 and abs(value) < Decimal("0.01"):
        return f"${value.quantize(Decimal('0.0001'), rounding=ROUND_HALF_UP):,}"
    return f"${value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"


@register.filter
def usd_micros(value: int | None) -> str:
    """1234567 -> "$1.23" (integer micro-dollars; sub-cent amounts keep 4 decimals)."""
    if value is None or value == "":
        return "—"
    return _money(Decimal(int(value)) / MICROS)


@register.filter
def usd(value: Decimal | int | None) -> str:
    if value is None or value == "":
        return "—"
    return _money(Decimal(value))


@register.filter
def budget_percent(spend_micros: int | None, budget_usd: Decimal | None) -> int | None:
    """Percentage of ``budget_usd`` spent, for meters (None without a budget)."""
    if budget_usd is None or spend_micros is None:
        return None
    budget_micros = Decimal(budget_usd) * MICROS
    if budget_micros <= 0:
        return 100 if spend_micros > 0 else 0
    return int((Decimal(spend_micros) * 100 / budget_micros).to_integral_value(rounding=ROUND_HALF_UP))


@register.filter
def meter_class(percent: int | None) -> str:
    if percent is None:
        return "meter-ok"
    if percent >= 100:
        return "meter-danger"
    if percent >= 80:
        return "meter-warn"
    return "meter-ok"


@register.filter
def clamp100(percent: int | None) -> int:
    return max(0, min(100, percent or 0))


@register.filter
def pct(value: float | None, digits: int = 1) -> str:
    """0.0123 -> "1.2%"."""
    if value is None:
        return "—"
    return f"{value * 100:.{digits}f}%"


@register.filter
def number(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


@register.filter
def get_item(mapping: dict, key):
    return mapping.get(key) if mapping else None
