from __future__ import annotations

import csv
import io

import pytest
from playwright.sync_api import expect, sync_playwright

from audit.models import AuditEvent
from audit.services import record
from tenants.models import Role
from tests.conftest import ARTIFACTS
from tests.factories import MembershipFactory, TenantFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SHOTS = ARTIFACTS / "screenshots"


@pytest.fixture
def page(gateway, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # ORM calls between Playwright steps
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(
            base_url=gateway.url, accept_downloads=True, viewport={"width": 1280, "height": 900}
        )
        tab = context.new_page()
        tab.problems = []
        tab.on("console", lambda m: tab.problems.append(m.text) if "Content Security Policy" in m.text else None)
        yield tab
        browser.close()


def test_audit_search_filters_live_as_you_type_and_exports(page):
    tenant = TenantFactory(name="Live Co", slug="live-co")
    other = TenantFactory(name="Other Co", slug="other-co")
    owner = UserFactory(username="owner@live.test")
    MembershipFactory(tenant=tenant, user=owner, role=Role.OWNER)
    record(tenant=tenant, action="api_key.created", target_type="tenants.apikey", target_label="alpha-key")
    record(
        tenant=tenant,
        action="budget.changed",
        target_type="tenants.apikey",
        target_label="beta-key",
        before={"budget_usd": "10.00"},
        after={"budget_usd": "20.00"},
        metadata={"ticket": "needle-42"},
    )
    record(tenant=other, action="api_key.created", target_label="their-key", metadata={"ticket": "needle-42"})

    page.goto("/login/")
    page.get_by_label("Email").fill(owner.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("networkidle")
    page.goto("/t/live-co/audit/")
    results = page.locator("#audit-results tbody tr")
    expect(results).to_have_count(2)

    page.get_by_label("Search metadata").press_sequentially("needle", delay=40)
    expect(results).to_have_count(1)
    expect(results.first).to_contain_text("budget.changed")
    expect(page.locator("#audit-results")).not_to_contain_text("their-key")
    assert "q=needle" in page.url  # the filtered view is bookmarkable
    page.screenshot(path=SHOTS / "audit-live-filter.png", full_page=True, caret="initial", animations="disabled")

    with page.expect_download() as download_info:
        page.locator("#audit-results").get_by_role("button", name="CSV").click()
    download = download_info.value
    rows = list(csv.DictReader(io.StringIO(open(download.path(), encoding="utf-8").read())))
    assert [r["action"] for r in rows] == ["budget.changed"]
    assert AuditEvent.objects.filter(tenant=tenant, action="export.downloaded").count() == 1

    results.first.get_by_role("link").click()
    page.wait_for_load_state("networkidle")
    expect(page.locator("main")).to_contain_text("budget_usd")
    expect(page.locator("main")).to_contain_text("20.00")
    assert page.problems == []
