from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from tenants import keys as key_tokens
from tenants.models import ApiKey
from tenants.services import api_key_create, api_key_revoke
from tests.console.usage import add_usage

TOKEN = re.compile(r"sk-sntl-[A-Za-z0-9]+-[A-Za-z0-9]+")


def _keys_url(tenant, name="keys", **kwargs):
    return reverse(f"tenants:{name}", kwargs={"tenant_slug": tenant.slug, **kwargs})


def test_keys_page_lists_only_this_tenants_keys(console, tenant, owner, their_key):
    api_key_create(tenant=tenant, actor=owner, name="backend-prod")
    html = console.get(_keys_url(tenant)).content.decode()
    assert "backend-prod" in html
    assert "their-secret-key" not in html and their_key.public_id not in html


def test_empty_keys_page_says_what_to_do_next(console, tenant, their_key):
    html = console.get(_keys_url(tenant)).content.decode()
    assert "No API keys yet" in html and "Create your first key" in html


def test_creating_a_key_shows_its_secret_once(htmx, console, tenant):
    response = htmx.post(
        _keys_url(tenant, "api_key_create"),
        {"name": "support-bot", "budget_usd": "25", "budget_period": "month", "rpm": "60", "scopes": ["usage:read"]},
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    html = response.content.decode()
    secret = TOKEN.search(html).group(0)
    key = ApiKey.objects.get(tenant=tenant, name="support-bot")
    assert key_tokens.matches(secret, key.secret_hash)
    assert (key.budget_usd, key.rpm, key.scopes) == (Decimal("25"), 60, ["usage:read"])
    assert 'data-copy-target="#new-secret"' in html and 'id="new-secret"' in html
    assert 'id="key-table" hx-swap-oob="true"' in html and "support-bot" in html
    assert AuditEvent.objects.filter(tenant=tenant, action="api_key.created", target_id=str(key.pk)).exists()
    # never again: not on the list, not in the edit form, not in the audit log
    for page in (_keys_url(tenant), _keys_url(tenant, "api_key_edit", key_id=key.pk)):
        assert secret not in console.get(page).content.decode()
    assert secret not in str(list(AuditEvent.objects.filter(tenant=tenant).values()))


def test_key_form_errors_are_inline_and_nothing_is_created(htmx, tenant):
    response = htmx.post(
        _keys_url(tenant, "api_key_create"),
        {"name": "", "budget_usd": "-5", "budget_period": "month", "expires_on": "2001-01-01"},
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert 'id="id_name_error"' in html and 'aria-invalid="true"' in html
    assert 'id="id_budget_usd_error"' in html and 'id="id_expires_on_error"' in html
    assert "Pick a day after today." in html
    assert not ApiKey.objects.filter(tenant=tenant).exists()


def test_creating_a_key_without_javascript_renders_the_whole_page_with_the_secret(console, tenant):
    response = console.post(_keys_url(tenant, "api_key_create"), {"name": "nojs", "budget_period": "month"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "<!doctype html>" in html and TOKEN.search(html)


def test_editing_a_key_changes_models_limits_budget_and_expiry(htmx, tenant, owner, catalog_models):
    key, _ = api_key_create(tenant=tenant, actor=owner, name="old-name")
    expires = (timezone.now() + timedelta(days=30)).date().isoformat()
    response = htmx.post(
        _keys_url(tenant, "api_key_edit", key_id=key.pk),
        {
            "name": "new-name",
            "allowed_models": ["gpt-test"],
            "tpm": "5000",
            "budget_usd": "12.50",
            "budget_period": "day",
            "expires_on": expires,
        },
    )
    assert response.status_code == 200
    key.refresh_from_db()
    assert (key.name, key.allowed_models, key.tpm, key.budget_usd, key.budget_period) == (
        "new-name",
        ["gpt-test"],
        5000,
        Decimal("12.50"),
        "day",
    )
    assert key.expires_at is not None and key.expires_at.date().isoformat() <= expires
    assert AuditEvent.objects.filter(tenant=tenant, action="api_key.updated", target_id=str(key.pk)).exists()


def test_rotating_keeps_the_key_and_budget_and_the_old_secret_for_the_grace_period(htmx, tenant, owner):
    key, old_secret = api_key_create(tenant=tenant, actor=owner, name="rotating", budget_usd=Decimal("40"))
    response = htmx.post(_keys_url(tenant, "api_key_rotate", key_id=key.pk), {"grace": "86400"})
    assert response.status_code == 200
    new_secret = TOKEN.search(response.content.decode()).group(0)
    rotated = ApiKey.objects.get(pk=key.pk)
    assert rotated.public_id == key.public_id and rotated.budget_usd == Decimal("40")
    assert key_tokens.matches(new_secret, rotated.secret_hash)
    assert key_tokens.matches(old_secret, rotated.previous_secret_hash)
    grace_left = rotated.previous_valid_until - timezone.now()
    assert timedelta(hours=23) < grace_left <= timedelta(hours=24)
    assert "old secret keeps working until" in response.content.decode()


def test_revoking_updates_the_table_in_place(htmx, tenant, owner):
    key, _ = api_key_create(tenant=tenant, actor=owner, name="doomed")
    response = htmx.post(_keys_url(tenant, "api_key_revoke", key_id=key.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="key-table"')
    assert "Revoked" in html and "doomed" in html and "revoked. Requests with it are refused" in html
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_revoke_asks_for_confirmation(console, tenant, owner):
    api_key_create(tenant=tenant, actor=owner, name="confirm-me")
    html = console.get(_keys_url(tenant)).content.decode()
    assert 'hx-confirm="Revoke “confirm-me”?' in html


def test_other_tenants_key_ids_give_404_on_every_key_action(htmx, tenant, their_key):
    for name, method in (
        ("api_key_edit", "get"),
        ("api_key_edit", "post"),
        ("api_key_rotate", "post"),
        ("api_key_revoke", "post"),
    ):
        response = getattr(htmx, method)(_keys_url(tenant, name, key_id=their_key.pk), {"name": "x", "grace": "0"})
        assert response.status_code == 404, name
    their_key.refresh_from_db()
    assert their_key.revoked_at is None and their_key.name == "their-secret-key"


def test_search_and_status_filter(console, tenant, owner):
    api_key_create(tenant=tenant, actor=owner, name="alpha-prod")
    beta, _ = api_key_create(tenant=tenant, actor=owner, name="beta-staging")
    api_key_revoke(tenant=tenant, key_id=beta.pk)

    def names(**params):
        html = console.get(_keys_url(tenant), params, headers={"HX-Request": "true", "HX-Target": "key-table"})
        return set(re.findall(r'<span class="strong">([^<]+)</span>', html.content.decode()))

    assert names() == {"alpha-prod", "beta-staging"}
    assert names(q="alpha") == {"alpha-prod"}
    assert names(q=f"sk-sntl-{beta.public_id}-") == {"beta-staging"}
    assert names(status="revoked") == {"beta-staging"}
    assert names(status="active") == {"alpha-prod"}
    empty = console.get(_keys_url(tenant), {"q": "zzz"}).content.decode()
    assert "No keys match" in empty and "Clear filters" in empty


def test_keys_are_paginated(console, tenant, owner):
    for n in range(23):
        api_key_create(tenant=tenant, actor=owner, name=f"key-{n:02d}")
    first = console.get(_keys_url(tenant)).content.decode()
    second = console.get(_keys_url(tenant), {"page": "2"}).content.decode()
    assert "Showing 1\u201320 of 23" in first and "key-22" in first and "key-00" not in first
    assert "Showing 21\u201323 of 23" in second and "key-00" in second


def test_spend_this_period_against_budget_and_last_used(console, tenant, other_tenant, owner, their_key):
    key, _ = api_key_create(tenant=tenant, actor=owner, name="metered", budget_usd=Decimal("10"))
    add_usage(tenant=tenant, key=key, cost_micros=500_000, count=3)
    add_usage(tenant=tenant, key=key, cost_micros=9_000_000, at=timezone.now() - timedelta(days=40))
    add_usage(tenant=other_tenant, key=their_key, cost_micros=7_000_000)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now() - timedelta(minutes=5))
    html = console.get(_keys_url(tenant)).content.decode()
    assert "$1.50 / $10.00" in html and "15%" in html
    assert "5\xa0minutes ago" in html or "5 minutes ago" in html
