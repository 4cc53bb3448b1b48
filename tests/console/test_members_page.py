from __future__ import annotations

import re
import time

import pytest
from django.core import mail, signing
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from tenants.models import Membership, Role
from tenants.services import INVITATION_SALT
from tests.factories import UserFactory


def _url(tenant, name, **kwargs):
    return reverse(f"tenants:{name}", kwargs={"tenant_slug": tenant.slug, **kwargs})


@pytest.fixture
def invite(htmx, tenant, django_capture_on_commit_callbacks):
    def send(email="new.person@a.test", role="admin") -> str:
        with django_capture_on_commit_callbacks(execute=True):
            response = htmx.post(_url(tenant, "member_invite"), {"email": email, "role": role})
        assert response.status_code == 200
        return re.search(r"http://testserver(/invite/\S+/)", mail.outbox[-1].body).group(1)

    return send


def test_members_page_lists_this_tenants_members_only(console, tenant, owner, their_key):
    html = console.get(_url(tenant, "members")).content.decode()
    assert owner.email in html
    assert "their-owner@b.test" not in html


def test_invitation_is_emailed_signed_and_audited(invite, tenant):
    link = invite()
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["new.person@a.test"] and "Tenant A" in message.subject
    assert "within 3 days" in message.body
    event = AuditEvent.objects.get(tenant=tenant, action="member.invited")
    assert event.after == {"email": "new.person@a.test", "role": "admin"}
    assert link.startswith("/invite/")


def test_new_user_accepts_invitation_by_choosing_a_password(invite, tenant):
    link = invite()
    client = Client()
    page = client.get(link)
    assert page.status_code == 200 and b"Join Tenant A" in page.content and b"Choose a password" in page.content
    mismatch = client.post(link, {"password1": "long-enough-pass-1", "password2": "other-pass-22"})
    assert mismatch.status_code == 422 and b"The two passwords differ." in mismatch.content
    accepted = client.post(link, {"password1": "long-enough-pass-1", "password2": "long-enough-pass-1"})
    assert accepted.status_code == 302 and accepted["Location"] == f"/t/{tenant.slug}/"
    membership = Membership.objects.get(tenant=tenant, user__email="new.person@a.test")
    assert membership.role == Role.ADMIN
    assert client.get(accepted["Location"]).status_code == 200
    assert AuditEvent.objects.filter(tenant=tenant, action="member.added").exists()


def test_existing_user_signs_in_to_accept(invite, tenant):
    user = UserFactory(username="known@a.test", email="known@a.test")
    link = invite(email="known@a.test", role="finance")
    anonymous = Client().get(link)
    assert b"Sign in to accept" in anonymous.content
    client = Client()
    client.force_login(user)
    assert client.post(link).status_code == 302
    assert Membership.objects.get(tenant=tenant, user=user).role == Role.FINANCE


def test_invitation_for_someone_else_is_refused(invite, tenant):
    link = invite(email="intended@a.test")
    intruder = Client()
    intruder.force_login(UserFactory(username="intruder@x.test", email="intruder@x.test"))
    response = intruder.post(link)
    assert response.status_code == 422 and b"This invitation is for intended@a.test" in response.content
    assert not Membership.objects.filter(tenant=tenant, user__email="intruder@x.test").exists()


def test_tampered_or_expired_invitations_are_refused(invite, tenant):
    link = invite()
    assert Client().get(link[:-3] + "xx/").status_code == 400

    class FourDaysAgo(signing.TimestampSigner):
        def timestamp(self) -> str:
            return signing.b62_encode(int(time.time()) - 4 * 86400)

    token = FourDaysAgo(salt=INVITATION_SALT).sign_object({"t": tenant.pk, "e": "late@a.test", "r": "viewer"})
    expired = Client().get(f"/invite/{token}/")
    assert expired.status_code == 400 and b"This invitation has expired" in expired.content
    assert not Membership.objects.filter(tenant=tenant, user__email="late@a.test").exists()


def test_invite_form_errors_are_inline(htmx, tenant):
    response = htmx.post(_url(tenant, "member_invite"), {"email": "not-an-email", "role": "emperor"})
    assert response.status_code == 422
    html = response.content.decode()
    assert 'id="id_email_error"' in html and 'id="id_role_error"' in html
    assert mail.outbox == []


def test_owner_changes_a_role_and_removes_a_member(htmx, tenant, member_of):
    member = member_of(tenant, Role.VIEWER, username="member@a.test")
    membership = member.memberships.get()
    changed = htmx.post(_url(tenant, "member_role", membership_id=membership.pk), {"role": "admin"})
    assert changed.status_code == 200 and b"member@a.test is now admin" in changed.content
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN
    removed = htmx.post(_url(tenant, "member_remove", membership_id=membership.pk))
    assert removed.status_code == 200 and b"member@a.test" in removed.content
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert AuditEvent.objects.filter(tenant=tenant, action="member.removed").exists()


def test_last_owner_cannot_be_demoted_or_removed_and_sees_why(htmx, tenant, owner):
    membership = owner.memberships.get()
    demote = htmx.post(_url(tenant, "member_role", membership_id=membership.pk), {"role": "viewer"})
    assert demote.status_code == 422
    assert b"the last owner cannot be demoted" in demote.content
    assert f'id="member-{membership.pk}-error"'.encode() in demote.content
    remove = htmx.post(_url(tenant, "member_remove", membership_id=membership.pk))
    assert remove.status_code == 422 and b"the last owner cannot be removed" in remove.content
    membership.refresh_from_db()
    assert membership.role == Role.OWNER


def test_destructive_member_actions_ask_for_confirmation(console, tenant, member_of):
    member_of(tenant, Role.VIEWER, username="leaving@a.test")
    html = console.get(_url(tenant, "members")).content.decode()
    assert 'hx-confirm="Remove leaving@a.test from Tenant A?' in html


def test_other_tenants_memberships_give_404(htmx, tenant, other_tenant, their_key):
    theirs = Membership.objects.get(tenant=other_tenant)
    assert htmx.post(_url(tenant, "member_role", membership_id=theirs.pk), {"role": "viewer"}).status_code == 404
    assert htmx.post(_url(tenant, "member_remove", membership_id=theirs.pk)).status_code == 404
    theirs.refresh_from_db()
    assert theirs.role == Role.OWNER
