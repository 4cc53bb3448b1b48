"""The console in a real browser: headless Debian Chromium driven by Playwright against a real
daphne server (the ``gateway`` fixture), the gateway called with the openai SDK.

Screenshots of every page land in test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
import time

import openai
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tenants.models import ApiKey, Role
from tests.conftest import ARTIFACTS
from tests.factories import MembershipFactory, TenantFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = ARTIFACTS / "screenshots"
PASSWORD = "correct horse battery"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API keeps an event loop in this thread; the ORM calls the test makes between
    # browser steps are plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Console:
    """One signed-in browser tab, collecting CSP violations and failed page loads."""

    def __init__(self, browser: Browser, base_url: str, *, width: int = 1280) -> None:
        self.base_url = base_url
        self.context = browser.new_context(viewport={"width": width, "height": 900}, base_url=base_url)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", self._on_console)
        self.page.on("dialog", lambda dialog: dialog.accept())

    def _on_console(self, message) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            self.problems.append(message.text)

    def sign_in(self, email: str, password: str = PASSWORD) -> None:
        self.page.goto("/login/")
        self.page.get_by_label("Email").fill(email)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_load_state("networkidle")

    def shot(self, name: str) -> None:
        # caret="initial": Playwright would otherwise inject an inline <style>, which our CSP blocks
        self.page.screenshot(path=SHOTS / f"{name}.png", full_page=True, caret="initial", animations="disabled")

    def visit(self, path: str, shot: str | None = None) -> Page:
        response = self.page.goto(path)
        assert response is not None and response.status == 200, (path, response and response.status)
        self.page.wait_for_load_state("networkidle")
        if shot:
            self.shot(shot)
        return self.page

    def csrf_token(self) -> str:
        headers = self.page.locator("body").get_attribute("hx-headers")
        return re.search(r'"x-csrftoken": "([^"]+)"', headers).group(1)


@pytest.fixture
def world(catalog):
    tenant = TenantFactory(name="Browser Co", slug="browser-co", timezone="Europe/Paris")
    owner = UserFactory(username="owner@browser.test", email="owner@browser.test")
    viewer = UserFactory(username="viewer@browser.test", email="viewer@browser.test")
    operator = UserFactory(username="operator@browser.test", is_superuser=True, is_staff=True)
    MembershipFactory(tenant=tenant, user=owner, role=Role.OWNER)
    MembershipFactory(tenant=tenant, user=viewer, role=Role.VIEWER)
    other = TenantFactory(name="Other Co", slug="other-co")
    MembershipFactory(tenant=other, user=owner, role=Role.ADMIN)
    return {"tenant": tenant, "owner": owner, "viewer": viewer, "operator": operator}


def _chat(base_url: str, secret: str) -> str:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=secret, max_retries=0, timeout=10)
    reply = client.chat.completions.create(model="builtin-test", messages=[{"role": "user", "content": "hello"}])
    return reply.choices[0].message.content or ""


def test_owner_creates_a_key_sees_it_live_and_revokes_it(browser, gateway, world):
    slug = world["tenant"].slug
    owner = Console(browser, gateway.url)
    owner.visit("/login/", shot="01-sign-in")
    owner.sign_in("owner@browser.test")
    expect(owner.page).to_have_url(f"{gateway.url}/")  # two tenants: the picker
    owner.shot("02-tenant-picker")
    owner.page.get_by_role("link", name=re.compile("Browser Co")).click()
    expect(owner.page.get_by_role("heading", name="Overview")).to_be_visible()
    owner.shot("03-overview-empty")

    # create a key: the secret is shown once, with a copy button
    keys = owner.visit(f"/t/{slug}/keys/", shot="04-keys-empty")
    keys.get_by_role("link", name="New API key").click()
    expect(keys.locator("#key-form-title")).to_be_visible()
    keys.get_by_role("button", name="Create key").click()
    expect(keys.locator("#id_name_error")).to_have_text("This field is required.")
    owner.shot("05-key-form-errors")
    keys.get_by_label("Name").fill("browser-e2e")
    keys.get_by_label("Budget (USD)").fill("5")
    keys.get_by_role("button", name="Create key").click()
    secret_box = keys.locator("#new-secret")
    expect(secret_box).to_be_visible()
    secret = secret_box.inner_text().strip()
    assert re.fullmatch(r"sk-sntl-\w+-\w+", secret)
    expect(keys.get_by_role("button", name="Copy")).to_have_attribute("data-copy-target", "#new-secret")
    expect(keys.locator("#key-table")).to_contain_text("browser-e2e")
    owner.shot("06-key-secret-shown-once")
    keys.get_by_role("link", name="I've copied it").click()
    expect(secret_box).to_have_count(0)
    keys.reload()
    assert secret not in keys.content()
    owner.shot("07-keys-list")

    # the live page, websocket connected
    live = Console(browser, gateway.url)
    live.context.add_cookies(owner.context.cookies())
    live.visit(f"/t/{slug}/live/")
    expect(live.page.locator(".live[data-live-status]")).to_have_attribute("data-live-state", "ws", timeout=5000)
    expect(live.page.locator("#live-requests")).to_have_text("0")

    # a tab whose websocket is refused falls back to polling the same fragment
    polling = Console(browser, gateway.url)
    polling.context.add_cookies(owner.context.cookies())
    polling.page.route_web_socket(re.compile(r".*/ws/t/.*"), lambda ws: ws.close(code=1011))
    polling.visit(f"/t/{slug}/live/")
    expect(polling.page.locator(".live[data-live-status]")).to_have_attribute("data-live-state", "polling")

    # call the gateway with the new key; the request shows up on the live page within 3 s
    assert _chat(gateway.url, secret)
    called = time.monotonic()
    expect(live.page.locator("#live-requests")).not_to_have_text("0", timeout=3000)
    assert time.monotonic() - called < 3
    live.page.wait_for_timeout(1200)
    live.shot("08-live-metrics-with-traffic")
    expect(polling.page.locator("#live-requests")).not_to_have_text("0", timeout=3000)
    expect(polling.page.locator(".live[data-live-status]")).to_have_attribute("data-live-state", "polling")
    polling.shot("08b-live-metrics-polling-fallback")

    # revoke: confirmation, the row updates in place, and the gateway refuses the key
    row = keys.locator("tr", has_text="browser-e2e")
    row.get_by_label("More actions for browser-e2e").click()
    owner.shot("09-key-actions-menu")
    row.get_by_role("button", name="Revoke key").click()
    expect(row.locator(".badge")).to_have_text("Revoked")
    owner.shot("10-key-revoked")
    assert ApiKey.objects.get(name="browser-e2e").revoked_at is not None
    deadline = time.monotonic() + 2
    while True:
        try:
            _chat(gateway.url, secret)
        except openai.AuthenticationError as refused:
            assert refused.status_code == 401
            break
        assert time.monotonic() < deadline, "the gateway still accepts a revoked key"
        time.sleep(0.1)

    # the Celery worker's job: move the spooled usage into the ledger; the overview reads the ledger
    from billing.services import usage_spool_drain

    usage_spool_drain(max_seconds=5)
    overview = owner.visit(f"/t/{slug}/", shot="11-overview-with-traffic")
    expect(overview.locator(".stat").first).to_contain_text("1")
    expect(overview.get_by_role("cell", name="builtin-test")).to_be_visible()

    # every other page of the tenant, for the record
    owner.visit(f"/t/{slug}/members/", shot="12-members")
    owner.page.get_by_label("Email address").fill("new.person@browser.test")
    owner.page.get_by_role("button", name="Send invitation").click()
    expect(owner.page.locator("#messages")).to_contain_text("Invitation sent to new.person@browser.test")
    owner.shot("13-members-invited")
    owner.visit(f"/t/{slug}/settings/", shot="14-settings")
    settings_page = owner.page
    settings_page.get_by_label("Personal data (PII)").select_option("redact")
    settings_page.get_by_role("button", name="Save guardrails").click()
    expect(settings_page.locator("#section-guardrails")).to_contain_text("Saved")
    settings_page.get_by_label("Thresholds (% of budget)").fill("fifty")
    settings_page.get_by_role("button", name="Save budget alerts").click()
    expect(settings_page.locator("#section-alerts .field-error")).to_contain_text("is not a whole number")
    owner.shot("15-settings-saved-and-error")
    for name in ("costs", "alerts"):
        link = owner.page.locator("nav.sidebar a", has_text="Costs" if name == "costs" else "Budget alerts")
        if link.count():
            owner.visit(link.get_attribute("href"), shot=f"16-billing-{name}")
    for label, name in (("Audit log", "audit"), ("Request log", "requests")):
        link = owner.page.locator("nav.sidebar a", has_text=label)
        if link.count():
            owner.visit(link.get_attribute("href"), shot=f"17-audit-{name}")
    owner.visit("/account/password/", shot="18-password-change")
    owner.visit(f"/t/{slug}/keys/")
    owner.page.set_viewport_size({"width": 768, "height": 1024})
    owner.shot("19-keys-tablet-768")
    owner.visit(f"/t/{slug}/", shot="20-overview-tablet-768")

    assert owner.problems == [] and live.problems == [] and polling.problems == []


def test_viewer_cannot_reach_any_mutating_action(browser, gateway, world):
    slug = world["tenant"].slug
    viewer = Console(browser, gateway.url)
    viewer.sign_in("viewer@browser.test")
    for path, shot in (
        (f"/t/{slug}/keys/", "21-viewer-keys"),
        (f"/t/{slug}/members/", "22-viewer-members"),
        (f"/t/{slug}/settings/", "23-viewer-settings"),
    ):
        page = viewer.visit(path, shot=shot)
        assert page.locator("[hx-post], form[method=post][action^='/t/']").count() == 0, path
        assert page.get_by_role("link", name="New API key").count() == 0
    expect(viewer.page.get_by_label("Default requests/min per key")).to_be_disabled()

    response = viewer.page.goto(f"/t/{slug}/keys/new/")
    assert response.status == 403
    viewer.shot("24-viewer-forbidden")
    viewer.visit(f"/t/{slug}/keys/")
    token = viewer.csrf_token()
    mutations = [
        f"/t/{slug}/keys/new/",
        f"/t/{slug}/members/invite/",
        f"/t/{slug}/settings/limits/",
        f"/t/{slug}/close/",
    ]
    for path in mutations:
        result = viewer.page.request.post(path, headers={"X-CSRFToken": token}, form={"name": "x", "email": "a@b.c"})
        assert result.status == 403, path
    assert not ApiKey.objects.filter(tenant=world["tenant"]).exists()
    assert viewer.problems == []


def test_operator_and_one_time_password_pages(browser, gateway, world):
    operator = Console(browser, gateway.url)
    operator.sign_in("operator@browser.test")
    page = operator.visit("/platform/tenants/", shot="25-platform-tenants")
    row = page.locator("tr", has_text="Browser Co")
    row.get_by_role("button", name="Suspend Browser Co").click()
    expect(row.locator(".badge")).to_have_text("Suspended")
    operator.shot("26-platform-tenant-suspended")
    row.get_by_role("button", name="Reactivate Browser Co").click()
    expect(row.locator(".badge")).to_have_text("Active")

    from tenants.services import tenant_create

    _, _, one_time = tenant_create(slug="fresh-co", name="Fresh Co", owner_email="boss@fresh.test")
    fresh = Console(browser, gateway.url)
    fresh.sign_in("boss@fresh.test", one_time)
    expect(fresh.page).to_have_url(f"{gateway.url}/account/password/")
    expect(fresh.page.get_by_role("alert")).to_contain_text("Choose your own password to continue")
    fresh.shot("27-one-time-password-must-change")
    fresh.page.locator("#id_old_password").fill(one_time)
    fresh.page.locator("#id_new_password1").fill("a-brand-new-pass-1")
    fresh.page.locator("#id_new_password2").fill("a-brand-new-pass-1")
    fresh.page.get_by_role("button", name="Change password").click()
    expect(fresh.page.get_by_role("heading", name="Password changed")).to_be_visible()
    fresh.visit("/t/fresh-co/", shot="28-fresh-tenant-overview")
    assert fresh.page.goto("/t/browser-co/").status == 404  # not a member: same answer as no such tenant

    # signed-out pages: password reset and an emailed invitation
    from tenants.services import member_invite

    token = member_invite(
        tenant=world["tenant"], email="invitee@browser.test", role="finance", actor=world["owner"], link_for=str
    )
    visitor = Console(browser, gateway.url)
    visitor.visit("/account/password-reset/", shot="30-password-reset")
    visitor.page.get_by_label("Email").fill("owner@browser.test")
    visitor.page.get_by_role("button", name="Email me a reset link").click()
    expect(visitor.page.get_by_role("heading", name="Check your email")).to_be_visible()
    visitor.shot("31-password-reset-sent")
    visitor.visit(f"/invite/{token}/", shot="32-invitation")
    visitor.page.locator("#id_password1").fill("invitee-pass-123")
    visitor.page.locator("#id_password2").fill("invitee-pass-123")
    visitor.page.get_by_role("button", name="Create account and join").click()
    expect(visitor.page.get_by_role("heading", name="Overview")).to_be_visible()
    visitor.shot("33-invitation-accepted")
    assert operator.problems == [] and fresh.problems == [] and visitor.problems == []
