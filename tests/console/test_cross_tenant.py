from __future__ import annotations

from collections import deque
from decimal import Decimal
from html.parser import HTMLParser
from urllib.parse import urlencode, urlsplit

from django.test import Client
from django.urls import resolve

from tenants.models import Role
from tenants.services import api_key_create
from tests.console.state import tenant_state
from tests.console.test_roles import ROLE_TABLE
from tests.console.usage import add_usage


class PageParser(HTMLParser):
    """Links (href, hx-get) and forms (with the values a browser would submit) of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: set[str] = set()
        self.forms: list[dict] = []
        self._form: dict | None = None
        self._select: str | None = None
        self._select_first: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        for attr in ("href", "hx-get"):
            if a.get(attr):
                self.links.add(a[attr])
        if tag == "form":
            action = a.get("hx-post") or a.get("action") or ""
            method = "post" if a.get("hx-post") or (a.get("method") or "get").lower() == "post" else "get"
            self._form = {"action": action, "method": method, "data": {}}
            self.forms.append(self._form)
        elif self._form is None:
            return
        elif tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self._form["data"].setdefault(a["name"], []).append(a.get("value", "on"))
            else:
                self._form["data"][a["name"]] = a.get("value", "")
        elif tag == "select":
            self._select, self._select_first = a.get("name"), None
        elif tag == "option" and self._select:
            if self._select_first is None:
                self._select_first = a.get("value", "")
                self._form["data"].setdefault(self._select, self._select_first)
            if "selected" in a:
                self._form["data"][self._select] = a.get("value", "")
        elif tag == "textarea":
            self._textarea = a.get("name")
            self._form["data"][self._textarea] = ""

    def handle_data(self, data: str) -> None:
        if self._form is not None and self._textarea:
            self._form["data"][self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def crawl(client: Client, start: str, prefix: str) -> tuple[list[str], list[dict]]:
    seen: set[str] = set()
    queue = deque([start])
    forms: dict[tuple, dict] = {}
    while queue:
        url = queue.popleft()
        if url in seen:
            continue
        seen.add(url)
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        if "text/html" not in response.get("Content-Type", ""):
            continue
        parser = PageParser()
        parser.feed(response.content.decode())
        for link in parser.links:
            parts = urlsplit(link)
            if not parts.path.startswith(prefix):
                continue
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            if target not in seen:
                queue.append(target)
        for form in parser.forms:
            action = urlsplit(form["action"] or url).path
            if form["method"] == "get":
                if action.startswith(prefix):
                    queue.append(f"{action}?{urlencode(form['data'], doseq=True)}")
            elif action.startswith(prefix):
                forms.setdefault((action, tuple(sorted(form["data"]))), {**form, "action": action})
    return sorted(seen), list(forms.values())


def test_every_console_url_and_form_of_tenant_a_is_404_for_a_member_of_tenant_b(
    tenant, other_tenant, owner, member_of, client_for, catalog_models
):
    key, _ = api_key_create(tenant=tenant, actor=owner, name="a-key", budget_usd=Decimal("5"))
    member_of(tenant, Role.VIEWER, username="a-viewer@a.test")
    add_usage(tenant=tenant, key=key, count=3)
    urls, forms = crawl(client_for(owner), f"/t/{tenant.slug}/", prefix=f"/t/{tenant.slug}/")

    crawled = {resolve(urlsplit(u).path).view_name for u in urls} | {resolve(f["action"]).view_name for f in forms}
    assert {f"tenants:{name}" for name in ROLE_TABLE} <= crawled
    assert len(forms) >= 8

    outsider = client_for(member_of(other_tenant, Role.OWNER))
    before = tenant_state(tenant)
    for url in urls:
        assert outsider.get(url).status_code == 404, url
        assert outsider.get(url, headers={"HX-Request": "true"}).status_code == 404, url
    for form in forms:
        response = outsider.post(form["action"], form["data"], headers={"HX-Request": "true"})
        assert response.status_code == 404, form["action"]
    assert tenant_state(tenant) == before
