from __future__ import annotations

from django.urls import reverse

from audit.models import AuditEvent
from gateway.models import Provider
from tenants.models import Tenant
from tenants.services import api_key_create, tenant_update
from tests.factories import UserFactory


def _operator(client_for):
    return client_for(UserFactory(is_superuser=True, is_staff=True))


def test_admin_never_displays_key_hashes_or_webhook_secrets(tenant, owner, client_for):
    key, token = api_key_create(tenant=tenant, actor=owner, name="admin-visible")
    tenant_update(tenant=tenant, alert_webhook_secret="whsec-admin-hidden")
    admin = _operator(client_for)
    pages = [
        reverse("admin:tenants_tenant_change", args=[tenant.pk]),
        reverse("admin:tenants_apikey_change", args=[key.pk]),
        reverse("admin:tenants_apikey_changelist"),
    ]
    for page in pages:
        html = admin.get(page).content.decode()
        assert "whsec-admin-hidden" not in html and key.secret_hash not in html and token not in html, page
    assert "admin-visible" in admin.get(pages[2]).content.decode()


def test_admin_suspend_action_goes_through_the_audited_service(tenant, client_for):
    admin = _operator(client_for)
    response = admin.post(
        reverse("admin:tenants_tenant_changelist"), {"action": "suspend", "_selected_action": [tenant.pk]}
    )
    assert response.status_code == 302
    assert Tenant.objects.get(pk=tenant.pk).status == Tenant.Status.SUSPENDED
    assert AuditEvent.objects.filter(tenant=tenant, action="tenant.suspended").exists()


def test_provider_credential_is_write_only_and_audited(db, client_for, settings):
    from cryptography.fernet import Fernet

    from gateway import credentials

    settings.SENTINEL_CREDENTIALS_KEY = Fernet.generate_key().decode()
    credentials._fernet.cache_clear()
    provider = Provider.objects.create(name="upstream-x", kind=Provider.Kind.OPENAI, base_url="https://x.test/v1")
    admin = _operator(client_for)
    url = reverse("admin:gateway_provider_change", args=[provider.pk])
    response = admin.post(
        url,
        {
            "kind": "openai",
            "base_url": "https://x.test/v1",
            "api_key_env": "",
            "enabled": "on",
            "new_api_key": "sk-up-123",
        },
    )
    assert response.status_code == 302
    provider.refresh_from_db()
    assert provider.encrypted_api_key and "sk-up-123" not in provider.encrypted_api_key
    html = admin.get(url).content.decode()
    assert "sk-up-123" not in html and provider.encrypted_api_key not in html and "stored (encrypted)" in html
    event = AuditEvent.objects.get(tenant=None, action="catalog.changed")
    assert event.after == {"credential_change": "replaced"}
    credentials._fernet.cache_clear()
