"""System check: every tenant-owned model has a direct ``tenant`` FK and indexes that start with it.

A model is tenant-owned unless it is allow-listed as global below. ``manage.py check`` (and so the
test-suite and every deploy) fails on a new model that forgets the rule.
"""

from __future__ import annotations

from django.apps import apps
from django.core import checks

OUR_APPS = {"tenants", "gateway", "billing", "audit"}
GLOBAL_MODELS = {
    "tenants.tenant",  # the tenant itself
    "tenants.userprofile",  # a user may belong to several tenants
    "gateway.provider",  # the platform catalog is the operator's, shared by all tenants
    "gateway.model",
    "gateway.route",
    "billing.price",  # list prices; per-tenant adjustments are tenant-owned
}


@checks.register(checks.Tags.models)
def tenant_fk_rule(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for model in apps.get_models():
        meta = model._meta
        if meta.app_label not in OUR_APPS or meta.label_lower in GLOBAL_MODELS:
            continue
        field = next((f for f in meta.fields if f.name == "tenant"), None)
        if field is None or not field.is_relation or field.related_model._meta.label_lower != "tenants.tenant":
            errors.append(
                checks.Error(
                    f"{meta.label} is tenant-owned but has no direct 'tenant' foreign key to tenants.Tenant.",
                    hint="Add tenant = ForeignKey('tenants.Tenant', ...) or allow-list it in sentinel_site/checks.py.",
                    obj=model,
                    id="sentinel.E001",
                )
            )
            continue
        for index in meta.indexes:
            first = index.fields[0].lstrip("-") if index.fields else None
            if first != "tenant":
                errors.append(
                    checks.Error(
                        f"{meta.label} index {index.name!r} does not start with 'tenant'.",
                        obj=model,
                        id="sentinel.E002",
                    )
                )
    return errors
