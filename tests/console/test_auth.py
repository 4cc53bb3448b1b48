from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.core import mail
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from tenants.forms import LOGIN_MAX_FAILURES
from tenants.models import Role, UserProfile
from tenants.services import tenant_create
from tests.console.conftest import PASSWORD
from tests.factories import UserFactory

LOGIN = "/login/"


def _login(client: Client, username: str, password: str, ip: str = "10.0.0.1"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_console_pages_redirect_anonymous_users_to_sign_in(tenant):
    response = Client().get(reverse("tenants:keys", args=[tenant.slug]))
    assert response.status_code == 302
    assert response["Location"].startswith(f"{LOGIN}?next=/t/{tenant.slug}/keys/")


def test_sign_in_page_has_labelled_fields_and_reset_link(db):
    html = Client().get(LOGIN).content.decode()
    assert '<label for="id_username">Email' in html and '<label for="id_password">Password' in html
    assert reverse("password_reset") in html
    assert "<script>" not in html and "onclick" not in html


def test_member_signs_in_and_lands_on_their_only_tenant(tenant, owner):
    client = Client()
    response = _login(client, owner.username, PASSWORD)
    assert response.status_code == 302
    landing = client.get(response["Location"])
    assert landing.status_code == 302 and landing["Location"] == f"/t/{tenant.slug}/"
    assert client.get(landing["Location"]).status_code == 200


def test_five_failed_sign_ins_lock_out_that_username_and_ip_with_a_form_error(owner):
    client = Client()
    for _ in range(LOGIN_MAX_FAILURES - 1):
        response = _login(client, owner.username, "wrong password")
        assert response.status_code == 200
        assert b"Please enter a correct" in response.content
    locked = _login(client, owner.username, "wrong password")
    assert locked.status_code == 200
    assert b"Too many failed sign-in attempts" in locked.content
    # even the right password is refused while locked, with the same form error (no 500)
    right = _login(client, owner.username, PASSWORD)
    assert right.status_code == 200 and b"Too many failed sign-in attempts" in right.content
    assert "_auth_user_id" not in client.session
    # another IP is not locked out
    assert _login(Client(), owner.username, PASSWORD, ip="10.0.0.2").status_code == 302
    assert AuditEvent.objects.filter(tenant=None, action="user.login_throttled").count() == 1


def test_successful_sign_in_resets_the_failure_counter(owner):
    client = Client()
    for _ in range(LOGIN_MAX_FAILURES - 1):
        _login(client, owner.username, "wrong password")
    assert _login(client, owner.username, PASSWORD).status_code == 302
    client.post(reverse("logout"))
    for _ in range(LOGIN_MAX_FAILURES - 1):
        _login(client, owner.username, "wrong password")
    assert _login(client, owner.username, PASSWORD).status_code == 302


def test_sign_out_is_a_post_and_ends_the_session(console, tenant):
    assert console.post(reverse("logout")).status_code == 302
    assert console.get(reverse("tenants:overview", args=[tenant.slug])).status_code == 302


def test_expired_session_sends_htmx_requests_to_sign_in_with_a_full_page_redirect(console, tenant):
    session = console.session
    session.set_expiry(-1)
    session.save()
    response = console.get(reverse("tenants:keys", args=[tenant.slug]), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith(LOGIN)


def test_session_lifetime_is_bounded():
    assert 60 <= settings.SESSION_COOKIE_AGE <= 24 * 3600


@pytest.fixture
def cli_owner(db):
    tenant, owner, password = tenant_create(slug="fresh", name="Fresh Co", owner_email="boss@fresh.test")
    return tenant, owner, password


def test_one_time_password_must_be_changed_before_any_console_page(cli_owner):
    tenant, owner, password = cli_owner
    client = Client()
    assert _login(client, owner.username, password).status_code == 302
    change = reverse("password_change")
    for url in ("/", f"/t/{tenant.slug}/", f"/t/{tenant.slug}/keys/", f"/t/{tenant.slug}/settings/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"] == change, url
    htmx = client.get(f"/t/{tenant.slug}/keys/", headers={"HX-Request": "true"})
    assert htmx["HX-Redirect"] == change
    page = client.get(change)
    assert page.status_code == 200 and b"Choose your own password to continue" in page.content

    weak = client.post(change, {"old_password": password, "new_password1": "short", "new_password2": "short"})
    assert weak.status_code == 200 and b"too short" in weak.content
    done = client.post(
        change, {"old_password": password, "new_password1": "a-much-better-pass", "new_password2": "a-much-better-pass"}
    )
    assert done.status_code == 302
    assert not UserProfile.objects.get(user=owner).must_change_password
    assert client.get(f"/t/{tenant.slug}/").status_code == 200
    assert AuditEvent.objects.filter(tenant=None, action="user.password_changed", actor_id=str(owner.pk)).exists()


def test_password_reset_by_email(owner):
    client = Client()
    sent = client.post(reverse("password_reset"), {"email": owner.email})
    assert sent.status_code == 302
    assert len(mail.outbox) == 1
    link = re.search(r"http://testserver(/account/password-reset/\S+)", mail.outbox[0].body).group(1)
    form = client.get(link, follow=True)
    assert form.status_code == 200 and b"Choose a new password" in form.content
    done = client.post(
        form.redirect_chain[-1][0] if form.redirect_chain else link,
        {"new_password1": "brand-new-secret-9", "new_password2": "brand-new-secret-9"},
    )
    assert done.status_code == 302
    assert _login(Client(), owner.username, "brand-new-secret-9").status_code == 302
    assert AuditEvent.objects.filter(tenant=None, action="user.password_reset").exists()


def test_unknown_email_gets_the_same_reset_answer_and_no_mail(db):
    response = Client().post(reverse("password_reset"), {"email": "nobody@nowhere.test"})
    assert response.status_code == 302
    assert mail.outbox == []


def test_console_responses_carry_csp_and_frame_protection(console, tenant):
    response = console.get(reverse("tenants:overview", args=[tenant.slug]))
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response["X-Frame-Options"] == "DENY"
    html = response.content.decode()
    assert 'hx-headers=\'{"x-csrftoken": "' in html
    assert '"allowEval": false' in html and '"includeIndicatorStyles": false' in html
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert not re.search(r"\son[a-z]+=", html), "inline handler"
    assert " style=" not in html


def test_multi_tenant_user_switches_tenant(tenant, other_tenant, owner, member_of, client_for):
    from tests.factories import MembershipFactory

    MembershipFactory(tenant=other_tenant, user=owner, role=Role.VIEWER)
    client = client_for(owner)
    home = client.get("/")
    assert home.status_code == 200 and b"Tenant A" in home.content and b"Tenant B" in home.content
    page = client.get(reverse("tenants:overview", args=[tenant.slug])).content.decode()
    assert 'id="tenant-switcher"' in page and "Tenant B" in page
    assert (
        client.get(reverse("tenants:switch"), {"tenant": other_tenant.slug})["Location"] == f"/t/{other_tenant.slug}/"
    )
    stranger = UserFactory()
    assert client_for(stranger).get(reverse("tenants:switch"), {"tenant": tenant.slug}).status_code == 404
