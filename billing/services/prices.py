"""Price book operations: a price change is a new version, never an edit of a charged one."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.services import record
from billing.errors import PriceBackdated
from billing.models import Price, PriceAdjustment
from gateway.models import Model
from sentinel_site import bus
from tenants.models import Tenant

# A version "effective now" typed in a form is a few seconds old when saved.
BACKDATE_TOLERANCE = timedelta(minutes=5)


def _not_backdated(effective_from: datetime, now: datetime | None) -> None:
    if effective_from < (now or timezone.now()) - BACKDATE_TOLERANCE:
        raise PriceBackdated("A price version cannot take effect in the past; usage already charged keeps its price.")


def _prices_changed() -> None:
    bus.publish("catalog")  # every gateway process reloads its price book


@transaction.atomic
def price_version_create(
    *,
    model: Model,
    input_per_mtok: Decimal,
    cached_input_per_mtok: Decimal,
    output_per_mtok: Decimal,
    effective_from: datetime,
    actor: Any,
    now: datetime | None = None,
) -> Price:
    """Add a list-price version of ``model`` taking effect at ``effective_from`` (now or later)."""
    _not_backdated(effective_from, now)
    price = Price(
        model=model,
        input_per_mtok=input_per_mtok,
        cached_input_per_mtok=cached_input_per_mtok,
        output_per_mtok=output_per_mtok,
        effective_from=effective_from,
    )
    price.full_clean()
    price.save(force_insert=True)
    record(
        tenant=None,
        action="price.created",
        actor=actor,
        target=price,
        after={
            "model": model.name,
            "input_per_mtok": input_per_mtok,
            "cached_input_per_mtok": cached_input_per_mtok,
            "output_per_mtok": output_per_mtok,
            "effective_from": effective_from.isoformat(),
        },
    )
    transaction.on_commit(_prices_changed)
    return price


@transaction.atomic
def price_adjustment_create(
    *,
    tenant: Tenant,
    model: Model | None,
    percent: Decimal,
    effective_from: datetime,
    actor: Any,
    now: datetime | None = None,
) -> PriceAdjustment:
    """Add a markup (+) or discount (-) for ``tenant`` on ``model`` (None: every model), applied
    to usage charged from ``effective_from`` (now or later) and recorded on each ledger row."""
    _not_backdated(effective_from, now)
    adjustment = PriceAdjustment(tenant=tenant, model=model, percent=percent, effective_from=effective_from)
    adjustment.full_clean()
    adjustment.save(force_insert=True)
    record(
        tenant=tenant,
        action="price_adjustment.created",
        actor=actor,
        target=adjustment,
        after={
            "model": model.name if model else None,
            "percent": percent,
            "effective_from": effective_from.isoformat(),
        },
    )
    transaction.on_commit(_prices_changed)
    return adjustment
