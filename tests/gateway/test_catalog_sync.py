from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from billing.models import Price
from gateway.catalog_sync import CatalogError, catalog_sync, load
from gateway.models import Provider, Route

pytestmark = pytest.mark.django_db

BASE = {
    "providers": [
        {
            "name": "openai-main",
            "kind": "openai",
            "base_url": "http://127.0.0.1:18000/v1",
            "api_key_env": "OPENAI_API_KEY",
        }
    ],
    "models": [
        {
            "name": "gpt-4o-mini",
            "routes": [{"provider": "openai-main", "model": "gpt-4o-mini", "priority": 1}],
            "price": {"input": 0.15, "cached_input": 0.075, "output": 0.60},
        }
    ],
}


def test_import_is_idempotent():
    catalog_sync(data=BASE)
    snapshot = (Provider.objects.count(), Route.objects.count(), Price.objects.count())
    second = catalog_sync(data=BASE)
    assert (Provider.objects.count(), Route.objects.count(), Price.objects.count()) == snapshot == (1, 1, 1)
    assert second.prices_added == 0 and second.changes == []


def test_a_changed_price_adds_a_version_and_never_edits_one():
    catalog_sync(data=BASE, now=timezone.now() - timedelta(days=10))
    old = Price.objects.get()
    changed = {
        **BASE,
        "models": [{**BASE["models"][0], "price": {"input": 0.20, "cached_input": 0.1, "output": 0.8}}],
    }
    catalog_sync(data=changed)
    assert Price.objects.count() == 2
    old.refresh_from_db()
    assert str(old.input_per_mtok) == "0.150000"
    assert AuditEvent.objects.filter(action="price.changed").count() == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"providers": [{"name": "x", "kind": "azure", "base_url": "http://h"}]}, "provider 'x': kind"),
        (
            {"models": [{"name": "m", "routes": [{"provider": "ghost"}]}]},
            "model 'm' routes\\[0\\]: unknown provider 'ghost'",
        ),
        ({"models": [{"name": "m", "routes": []}]}, "model 'm': at least one route"),
        (
            {**BASE, "models": [{**BASE["models"][0], "price": {"input": "cheap", "output": 1}}]},
            "model 'gpt-4o-mini' price.input",
        ),
        ({"providers": [{"name": "p", "kind": "openai"}]}, "provider 'p': base_url is required"),
        ({"modles": []}, "unknown top-level"),
    ],
)
def test_bad_entries_are_rejected_with_the_entry_named(data, message):
    with pytest.raises(CatalogError, match=message):
        catalog_sync(data=data)
    assert not Provider.objects.filter(name__in=["x", "p"]).exists()


def test_bad_yaml_names_the_position(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("providers:\n  - name: a\n    kind: [openai\n")
    with pytest.raises(CatalogError, match="invalid YAML \\(line"):
        load(bad)
