from __future__ import annotations

from decimal import Decimal

from django.urls import reverse

from audit.models import AuditEvent
from tenants.models import ApiKey, Membership, Role, Tenant
from tenants.services import api_key_create


def _section(tenant, section):
    return reverse("tenants:settings_section", kwargs={"tenant_slug": tenant.slug, "section": section})


def test_settings_page_shows_every_section_with_labelled_fields(console, tenant):
    html = console.get(reverse("tenants:settings", args=[tenant.slug])).content.decode()
    for section in ("general", "limits", "models", "guardrails", "cache", "alerts"):
        assert f'id="section-{section}"' in html
    for field in ("id_limits-default_rpm", "id_guardrails-pii", "id_cache-cache_ttl_seconds", "id_alerts-alert_emails"):
        assert f'<label for="{field}">' in html


def test_limits_and_budget_are_saved_through_the_audited_service(htmx, tenant):
    response = htmx.post(
        _section(tenant, "limits"),
        {"limits-default_rpm": "100", "limits-tpm": "90000", "limits-budget_usd": "250", "limits-budget_period": "day"},
    )
    assert response.status_code == 200 and b"Saved" in response.content
    tenant.refresh_from_db()
    assert (tenant.default_rpm, tenant.tpm, tenant.budget_usd, tenant.budget_period) == (
        100,
        90000,
        Decimal("250"),
        "day",
    )
    event = AuditEvent.objects.get(tenant=tenant, action="tenant.settings_changed")
    assert event.after["default_rpm"] == 100


def test_guardrail_policies_per_detector(htmx, tenant):
    data = {"guardrails-pii": "redact", "guardrails-injection": "block", "guardrails-secrets": "flag"}
    assert htmx.post(_section(tenant, "guardrails"), data).status_code == 200
    tenant.refresh_from_db()
    assert tenant.guardrails == {"pii": "redact", "injection": "block", "secrets": "flag"}
    bad = htmx.post(_section(tenant, "guardrails"), {**data, "guardrails-pii": "explode"})
    assert bad.status_code == 422 and b'id="id_guardrails-pii_error"' in bad.content


def test_allowed_models_cache_ttl_and_logging(htmx, tenant, catalog_models):
    assert htmx.post(_section(tenant, "models"), {"models-allowed_models": ["gpt-test"]}).status_code == 200
    cache = {
        "cache-cache_ttl_seconds": "600",
        "cache-log_prompts": "on",
        "cache-request_log_retention_days": "14",
        "cache-audit_retention_days": "400",
    }
    assert htmx.post(_section(tenant, "cache"), cache).status_code == 200
    tenant.refresh_from_db()
    assert tenant.allowed_models == ["gpt-test"]
    assert (tenant.cache_ttl_seconds, tenant.log_prompts, tenant.request_log_retention_days) == (600, True, 14)


def test_alert_recipients_thresholds_and_a_write_only_webhook_secret(htmx, console, tenant):
    data = {
        "alerts-alert_thresholds": "80, 50, 100%",
        "alerts-alert_emails": "Finance@A.test\nops@a.test",
        "alerts-alert_webhook_url": "https://hooks.a.test/sentinel",
        "alerts-alert_webhook_secret": "whsec-do-not-show",
    }
    response = htmx.post(_section(tenant, "alerts"), data)
    assert response.status_code == 200
    tenant.refresh_from_db()
    assert tenant.alert_thresholds == [50, 80, 100]
    assert tenant.alert_emails == ["finance@a.test", "ops@a.test"]
    assert tenant.alert_webhook_secret == "whsec-do-not-show"
    page = console.get(reverse("tenants:settings", args=[tenant.slug])).content.decode()
    assert "whsec-do-not-show" not in page and "whsec-do-not-show" not in response.content.decode()
    assert "A signing secret is set" in page
    # saving again without typing the secret keeps it
    htmx.post(_section(tenant, "alerts"), {**data, "alerts-alert_webhook_secret": ""})
    tenant.refresh_from_db()
    assert tenant.alert_webhook_secret == "whsec-do-not-show"
    event = AuditEvent.objects.filter(tenant=tenant, action="tenant.settings_changed").order_by("seq").first()
    assert event.after["alert_webhook_secret"] == "[redacted]"


def test_invalid_alert_settings_show_inline_errors(htmx, tenant):
    response = htmx.post(
        _section(tenant, "alerts"),
        {"alerts-alert_thresholds": "fifty", "alerts-alert_emails": "nope", "alerts-alert_webhook_url": "ftp://x"},
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert "“fifty” is not a whole number." in html and "“nope” is not an email address." in html
    assert 'id="id_alerts-alert_webhook_url_error"' in html


def test_unknown_section_is_404(htmx, tenant):
    assert htmx.post(_section(tenant, "everything")).status_code == 404


def test_viewer_sees_settings_read_only(tenant, member_of, client_for):
    html = client_for(member_of(tenant, Role.VIEWER)).get(reverse("tenants:settings", args=[tenant.slug]))
    text = html.content.decode()
    assert "You have read-only access" in text and "<fieldset disabled>" in text
    assert "Delete this tenant" not in text


def test_owner_deletes_the_tenant_only_after_typing_its_slug(htmx, tenant, owner, their_key):
    key, _ = api_key_create(tenant=tenant, actor=owner, name="k")
    url = reverse("tenants:tenant_close", args=[tenant.slug])
    refused = htmx.post(url, {"confirm_slug": "wrong"})
    assert refused["HX-Redirect"].endswith("/settings/#danger-zone")
    assert Tenant.objects.get(pk=tenant.pk).is_active
    done = htmx.post(url, {"confirm_slug": tenant.slug})
    assert done["HX-Redirect"] == "/"
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.SUSPENDED
    assert not Membership.objects.filter(tenant=tenant).exists()
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    assert AuditEvent.objects.filter(tenant=tenant, action="tenant.deleted").exists()
    their_key.refresh_from_db()
    assert their_key.revoked_at is None
