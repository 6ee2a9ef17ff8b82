"""Content-Security-Policy on every page: a walk through the app as each role, following every
link and asset a page names, finds the header on every response and no inline script, event
handler attribute or style attribute that the policy would block."""

import re
from collections import deque
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from django.test import Client

from cases.review import services as reviews
from tests.cases.field_helpers import add_field
from tests.cases.review_helpers import add_cells

CSP = "Content-Security-Policy"
MAX_PAGES = 250
# Links that change state on GET would not exist; these end the session, so the walk skips them.
SKIP = re.compile(r"^/(logout/|admin/logout/)")


class _Page(HTMLParser):
    """Collects the links and assets of a page and what the policy would refuse inline."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("href", "src", "action"):
            if attrs.get(name) and name != "action":
                self.urls.append(attrs[name])
        for name in attrs:
            if name.startswith("on") or name == "style":
                self.inline.append(f"<{tag} {name}=...>")
        kind = (attrs.get("type") or "text/javascript").lower()
        self._in_script = tag == "script" and "src" not in attrs and "json" not in kind

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline.append(f"<script>{data.strip()[:60]}")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False


def walk(client: Client, starts: list[str]) -> dict[str, int]:
    """GET every same-site URL reachable from `starts`; asserts on each response as it goes."""
    seen: dict[str, int] = {}
    queue = deque(starts)
    while queue and len(seen) < MAX_PAGES:
        url = queue.popleft()
        if url in seen or SKIP.match(url):
            continue
        response = client.get(url)
        seen[url] = response.status_code
        assert response.has_header(CSP), f"{url} ({response.status_code}) has no {CSP}"
        assert "default-src 'self'" in response[CSP]
        if response.status_code in (301, 302) and response["Location"].startswith("/"):
            queue.append(urlsplit(response["Location"]).path)
        if not response.get("Content-Type", "").startswith("text/html"):
            continue
        page = _Page()
        page.feed(response.content.decode())
        assert not page.inline, f"{url} has inline code the policy blocks: {page.inline}"
        for link in page.urls:
            target = urlsplit(urljoin(url, link))
            if not target.scheme.startswith("http") and not target.netloc and target.path:
                queue.append(target.path + (f"?{target.query}" if target.query else ""))
    return seen


@pytest.fixture
def app_with_data(case, clinician, reviewer):
    add_cells(case, clinician, [0.95, 0.05, 0.7], files=True, failed=1)
    add_field(case, clinician, [0.1, 0.9])
    reviews.review_claim(case=case, by=reviewer)
    return case


@pytest.mark.parametrize("role", ["anonymous", "clinician", "reviewer", "lab_admin"])
def test_every_page_of_a_walk_carries_the_policy(app_with_data, request, role):
    client = Client()
    if role != "anonymous":
        client.force_login(request.getfixturevalue(role))
    starts = ["/", "/login/", "/no-such-page/", "/api/v1/", "/api/v1/docs/", "/admin/"]
    seen = walk(client, starts)
    pages = [url for url, status in seen.items() if status == 200]
    if role == "anonymous":
        assert "/login/" in pages
    else:
        case = app_with_data
        assert f"/cases/{case.pk}/" in pages
        assert len(pages) > 10, seen
    if role == "reviewer":
        assert f"/review/case/{case.pk}/" in pages
        assert any(url.endswith("/field/") for url in pages), pages


def test_the_policy_allows_no_inline_script_and_is_configurable(client, settings):
    policy = client.get("/login/")[CSP]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy
