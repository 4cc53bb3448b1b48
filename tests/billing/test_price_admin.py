from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from billing.models import Price, PriceAdjustment
from gateway.models import Model
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator():
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def model():
    return Model.objects.create(name="gpt-test")


def when(at):
    local = timezone.localtime(at)
    return {"effective_from_0": local.strftime("%Y-%m-%d"), "effective_from_1": local.strftime("%H:%M:%S")}


def test_a_new_price_version_is_added_audited_and_never_edited(operator, model):
    at = timezone.now() + timedelta(days=1)

    response = operator.post(
        "/admin/billing/price/add/",
        {
            "model": model.pk,
            "input_per_mtok": "2.5",
            "cached_input_per_mtok": "1.25",
            "output_per_mtok": "10",
            **when(at),
        },
    )

    assert response.status_code == 302
    price = Price.objects.get(model=model)
    assert (price.input_per_mtok, price.output_per_mtok) == (Decimal("2.5"), Decimal("10"))
    assert AuditEvent.objects.filter(tenant=None, action="price.created", target_id=str(price.pk)).exists()
    change = f"/admin/billing/price/{price.pk}/change/"
    assert operator.get(change).status_code == 200  # view only
    assert b'name="_save"' not in operator.get(change).content
    assert operator.post(change, {"model": model.pk, "input_per_mtok": "0", **when(at)}).status_code == 403
    assert operator.post(f"/admin/billing/price/{price.pk}/delete/", {"post": "yes"}).status_code == 403
    price.refresh_from_db()
    assert price.input_per_mtok == Decimal("2.5")


def test_a_price_cannot_take_effect_in_the_past(operator, model):
    response = operator.post(
        "/admin/billing/price/add/",
        {
            "model": model.pk,
            "input_per_mtok": "1",
            "cached_input_per_mtok": "1",
            "output_per_mtok": "1",
            **when(timezone.now() - timedelta(days=2)),
        },
    )

    assert response.status_code == 200
    assert b"cannot take effect in the past" in response.content
    assert not Price.objects.exists()


def test_a_tenant_discount_is_added_to_the_tenants_audit_chain(operator, model, tenant):
    response = operator.post(
        "/admin/billing/priceadjustment/add/",
        {"tenant": tenant.pk, "model": "", "percent": "-12.5", **when(timezone.now() + timedelta(minutes=1))},
    )

    assert response.status_code == 302
    adjustment = PriceAdjustment.objects.get(tenant=tenant)
    assert adjustment.percent == Decimal("-12.5") and adjustment.model is None
    assert AuditEvent.objects.filter(tenant=tenant, action="price_adjustment.created").exists()
