from django.apps import apps
from django.db import models

from sentinel_site.checks import GLOBAL_MODELS, OUR_APPS, tenant_fk_rule


def test_current_models_follow_the_tenant_fk_rule():
    assert tenant_fk_rule() == []


def test_every_model_of_ours_is_either_tenant_owned_or_allow_listed():
    for model in apps.get_models():
        if model._meta.app_label in OUR_APPS and model._meta.label_lower not in GLOBAL_MODELS:
            assert any(f.name == "tenant" for f in model._meta.fields), model


def test_a_new_model_without_tenant_fk_fails_the_check():
    class Orphan(models.Model):
        name = models.CharField(max_length=10)

        class Meta:
            app_label = "billing"

    class BadIndex(models.Model):
        tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE)
        day = models.DateField()

        class Meta:
            app_label = "billing"
            indexes = [models.Index(fields=["day"], name="badindex_day")]

    try:
        ids = {e.id for e in tenant_fk_rule()}
        assert ids == {"sentinel.E001", "sentinel.E002"}
    finally:
        for name in ("orphan", "badindex"):
            apps.all_models["billing"].pop(name, None)
        apps.clear_cache()
