from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import PriceAdjustment, UsageEvent
from billing.pricing import PriceBook, Quote, quote_for
from gateway.catalog_sync import catalog_sync

pytestmark = pytest.mark.django_db


def catalog(price_in, price_out, now):
    return catalog_sync(
        now=now,
        data={
            "providers": [{"name": "builtin", "kind": "mock"}],
            "models": [
                {
                    "name": "m",
                    "routes": [{"provider": "builtin"}],
                    "price": {"input": price_in, "cached_input": price_in / 2, "output": price_out},
                }
            ],
        },
    )


def test_cost_is_exact_integer_micro_dollars():
    quote = Quote(1, Decimal("0.15"), Decimal("0.075"), Decimal("0.60"))
    # 1000 uncached * 0.15 + 0 + 500 * 0.60 = 150 + 300 = 450 micro-dollars
    assert quote.cost_micros(prompt_tokens=1000, completion_tokens=500) == 450
    # 7 cached tokens * 0.075 = 0.525 -> rounds half-up once per event
    assert quote.cost_micros(prompt_tokens=7, cached_tokens=7) == 1


def test_markup_and_discount_apply_at_charge_time():
    quote = Quote(1, Decimal("1"), Decimal("1"), Decimal("2"), adjustment_percent=Decimal("-20"))
    assert quote.cost_micros(prompt_tokens=1000, completion_tokens=1000) == 2400


def test_an_old_usage_keeps_its_old_price(tenant):
    now = timezone.now()
    catalog(1.0, 2.0, now - timedelta(days=20))
    catalog(4.0, 8.0, now - timedelta(days=5))
    old_quote = quote_for(tenant_id=tenant.pk, model_name="m", at=now - timedelta(days=10))
    new_quote = quote_for(tenant_id=tenant.pk, model_name="m", at=now)
    assert old_quote.price_id != new_quote.price_id
    assert old_quote.cost_micros(prompt_tokens=1000) == 1000
    assert new_quote.cost_micros(prompt_tokens=1000) == 4000
    event = UsageEvent.objects.create(
        tenant=tenant,
        request_id="r1",
        model="m",
        price_id=old_quote.price_id,
        cost_micros=1000,
        created_at=now - timedelta(days=10),
    )
    catalog(9.0, 9.0, now)
    event.refresh_from_db()
    assert event.cost_micros == 1000 and event.price_id == old_quote.price_id


def test_unpriced_model_has_no_quote(tenant):
    assert quote_for(tenant_id=tenant.pk, model_name="ghost") is None


def test_pricebook_snapshot_matches_database_quote(tenant):
    now = timezone.now()
    catalog(1.0, 2.0, now - timedelta(days=1))
    PriceAdjustment.objects.create(tenant=tenant, percent=Decimal("10"), effective_from=now - timedelta(hours=1))
    book = PriceBook()
    book._load()
    assert book.quote(tenant_id=tenant.pk, model_name="m") == quote_for(tenant_id=tenant.pk, model_name="m")
    assert book.quote(tenant_id=tenant.pk, model_name="m").adjustment_percent == Decimal("10")
