from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from billing.models import UsageEvent
from gateway.models import Model
from tenants import keys
from tenants.models import ApiKey, Membership, Role, Tenant

pytestmark = pytest.mark.django_db


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_tenant_with_new_owner_prints_one_time_password():
    out = run("create_tenant", "acme", "--name", "Acme", "--owner-email", "Boss@Acme.test")
    tenant = Tenant.objects.get(slug="acme")
    owner = get_user_model().objects.get(email="boss@acme.test")
    assert Membership.objects.get(tenant=tenant, user=owner).role == Role.OWNER
    password = out.strip().rsplit(" ", 1)[-1]
    assert owner.check_password(password) and owner.profile.must_change_password


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad Slug!"], "slug"),
        (["acme", "--owner-email", "not-an-email"], "--owner-email"),
    ],
)
def test_create_tenant_bad_arguments(args, message):
    with pytest.raises(CommandError, match=message):
        run("create_tenant", *args)


def test_create_tenant_twice_is_an_operator_error():
    run("create_tenant", "acme")
    with pytest.raises(CommandError, match="already exists"):
        run("create_tenant", "acme")


def test_create_api_key_prints_only_the_secret(tenant):
    Model.objects.create(name="m1")
    out = run(
        "create_api_key",
        tenant.slug,
        "--name",
        "ci",
        "--models",
        "m1",
        "--rpm",
        "60",
        "--tpm",
        "1000",
        "--budget-usd",
        "12.50",
        "--budget-period",
        "day",
        "--expires-in-days",
        "7",
    )
    token = out.strip()
    assert "\n" not in token and keys.parse(token) is not None
    key = ApiKey.objects.get(tenant=tenant)
    assert key.allowed_models == ["m1"] and key.rpm == 60 and key.tpm == 1000
    assert str(key.budget_usd) == "12.500000" and key.budget_period == "day" and key.expires_at is not None
    assert keys.matches(token, key.secret_hash)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "no tenant"),
        (["{slug}", "--rpm", "lots"], "whole number"),
        (["{slug}", "--rpm", "0"], "positive"),
        (["{slug}", "--budget-usd", "ten"], "not a number"),
        (["{slug}", "--budget-usd", "-1"], "zero or more"),
        (["{slug}", "--budget-period", "week"], "--budget-period"),
        (["{slug}", "--models", "ghost-model"], "unknown models"),
        (["{slug}", "--scopes", "admin:all"], "--scopes"),
    ],
)
def test_create_api_key_bad_arguments(tenant, args, message):
    with pytest.raises(CommandError, match=message):
        run("create_api_key", *[a.format(slug=tenant.slug) for a in args])
    assert not ApiKey.objects.exists()


def test_sync_catalog_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        run("sync_catalog", str(tmp_path / "missing.yaml"))


def test_seed_demo_is_idempotent():
    first = run("seed_demo", "--days", "3")
    counts = (
        Tenant.objects.count(),
        ApiKey.objects.count(),
        UsageEvent.objects.count(),
        Membership.objects.count(),
    )
    second = run("seed_demo", "--days", "3")
    assert counts == (
        Tenant.objects.count(),
        ApiKey.objects.count(),
        UsageEvent.objects.count(),
        Membership.objects.count(),
    )
    assert "shown once" in first and "shown once" not in second
    roles = set(Membership.objects.filter(tenant__slug="acme").values_list("role", flat=True))
    assert roles == set(Role.values)
    assert UsageEvent.objects.filter(tenant__slug="acme").exists()


def test_default_catalog_ships_openai_anthropic_and_mock_models():
    out = run("sync_catalog", str(Path("gateway/catalog/default.yaml")))
    assert "catalog synced" in out
    names = set(Model.objects.values_list("name", flat=True))
    assert {"gpt-4o-mini", "claude-sonnet-4-5", "mock-gpt"} <= names
