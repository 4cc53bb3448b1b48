from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.models import PriceAdjustment, UsageEvent
from billing.pricing import quote_for
from billing.services import price_version_create, usage_rollup_pending, usage_spool_drain
from gateway.catalog_sync import catalog_sync
from gateway.models import Model
from tests.billing.conftest import submit_all, usage

pytestmark = pytest.mark.django_db

CHANGE = datetime(2026, 10, 15, tzinfo=UTC)
DISCOUNT = datetime(2026, 10, 20, tzinfo=UTC)


def sync(price_in: float, price_out: float, now: datetime) -> None:
    catalog_sync(
        now=now,
        data={
            "providers": [{"name": "builtin", "kind": "mock"}],
            "models": [
                {
                    "name": "gpt-test",
                    "routes": [{"provider": "builtin"}],
                    "price": {"input": price_in, "cached_input": price_in / 2, "output": price_out},
                }
            ],
        },
    )


def charged(tenant, key, at: datetime, prompt: int, completion: int):
    """What the gateway does at settle time: the quote in force at ``at``."""
    quote = quote_for(tenant_id=tenant.pk, model_name="gpt-test", at=at)
    return usage(
        tenant,
        key,
        at=at,
        prompt=prompt,
        completion=completion,
        cost=quote.cost_micros(prompt_tokens=prompt, completion_tokens=completion),
        price_id=quote.price_id,
        adjustment_percent=quote.adjustment_percent,
    )


def micros(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def test_a_mid_month_price_change_charges_old_usage_at_the_old_price(tenant, keys, console):
    sync(1.0, 2.0, datetime(2026, 9, 1, tzinfo=UTC))
    sync(3.0, 8.0, CHANGE)
    PriceAdjustment.objects.create(tenant=tenant, percent=Decimal("-10"), effective_from=DISCOUNT)
    days = [datetime(2026, 10, d, 10, 30, tzinfo=UTC) for d in range(1, 32)]
    records = [charged(tenant, keys[d % 2], at, prompt=1000 + 7 * d, completion=333 + d) for d, at in enumerate(days)]
    submit_all(records)
    usage_spool_drain(max_seconds=5)
    usage_rollup_pending()

    old = [r for r in records if r.created_at < CHANGE]
    new = [r for r in records if CHANGE <= r.created_at < DISCOUNT]
    discounted = [r for r in records if r.created_at >= DISCOUNT]
    expected_old = sum(micros(Decimal(r.prompt_tokens) * 1 + Decimal(r.completion_tokens) * 2) for r in old)
    expected_new = sum(micros(Decimal(r.prompt_tokens) * 3 + Decimal(r.completion_tokens) * 8) for r in new)
    expected_discounted = sum(
        micros((Decimal(r.prompt_tokens) * 3 + Decimal(r.completion_tokens) * 8) * Decimal("0.9")) for r in discounted
    )
    url = reverse("billing:costs", kwargs={"tenant_slug": tenant.slug})

    def page_total(start: str, end: str) -> int:
        return console.get(url, {"start": start, "end": end}).context["totals"].cost_micros

    assert page_total("2026-10-01", "2026-10-14") == expected_old
    assert page_total("2026-10-15", "2026-10-19") == expected_new
    assert page_total("2026-10-20", "2026-10-31") == expected_discounted
    before = page_total("2026-10-01", "2026-10-31")
    assert before == expected_old + expected_new + expected_discounted

    price_version_create(
        model=Model.objects.get(name="gpt-test"),
        input_per_mtok=Decimal("50"),
        cached_input_per_mtok=Decimal("25"),
        output_per_mtok=Decimal("90"),
        effective_from=timezone.now() + timedelta(minutes=1),
        actor=None,
    )
    assert page_total("2026-10-01", "2026-10-31") == before

    statement = console.get(
        reverse("billing:statement", kwargs={"tenant_slug": tenant.slug, "year": 2026, "month": 10})
    ).context["statement"]
    lines = {(line.input_per_mtok, line.output_per_mtok, line.adjustment_percent): line for line in statement.lines}
    assert {k: v.totals.cost_micros for k, v in lines.items()} == {
        (Decimal("1"), Decimal("2"), Decimal("0")): expected_old,
        (Decimal("3"), Decimal("8"), Decimal("0")): expected_new,
        (Decimal("3"), Decimal("8"), Decimal("-10")): expected_discounted,
    }
    assert sorted(v.totals.requests for v in lines.values()) == sorted([len(old), len(new), len(discounted)])
    assert UsageEvent.objects.filter(tenant=tenant, adjustment_percent=Decimal("-10")).count() == len(discounted)
