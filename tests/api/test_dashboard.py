"""The server-rendered parts of the Cluster Management page: the shell, its assets, the sign-in
helper. What the page does in a browser is tested in tests/e2e/test_browser.py."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from api.event_schemas import ConfigurationSchema
from tests.api.conftest import heartbeat

SVG_NAMESPACE = "http://www.w3.org/2000/svg"


class Page(HTMLParser):
    """Collects what the tests look at: tags with their attributes, and label targets."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def all(self, tag: str) -> list[dict]:
        return [attrs for name, attrs in self.tags if name == tag]


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def test_the_page_is_served_without_a_token_and_names_the_panes(client):
    response = client.get("/")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    for text in ("Cluster Configuration", "Servers in Cluster", "Time travel", "Sign in"):
        assert text in html
    page = parse(html)
    assert any(f.get("id") == "sign-in-form" for f in page.all("form"))
    token = next(i for i in page.all("input") if i.get("id") == "token")
    assert token["type"] == "password"  # never shown on screen


def test_the_servers_table_is_semantic_markup(client):
    page = parse(client.get("/").get_data(as_text=True))

    headers = [th for th in page.all("th") if th.get("scope") == "col"]
    # 7 columns of the servers table + 7 of the targets table + 5 of the history table
    # + the notifications pane's channels (7), deliveries (5) and silences (6) + the event log (6)
    assert len(headers) == 19 + 18 + 6
    assert any(th.get("scope") == "row" for th in page.all("th")), "rows are headed by the server"
    assert page.all("caption"), "the servers table has a caption"


def test_every_input_has_a_label(client):
    page = parse(client.get("/").get_data(as_text=True))

    labelled = {label["for"] for label in page.all("label")}
    inputs = [i for i in page.all("input") if i.get("type") != "hidden"]
    assert inputs
    assert [i["id"] for i in inputs if i["id"] not in labelled] == []


def test_the_configuration_pane_edits_exactly_what_the_api_accepts(client):
    page = parse(client.get("/").get_data(as_text=True))

    names = {i["name"] for i in page.all("input") if i.get("id", "").startswith("cfg-")}
    assert names == set(ConfigurationSchema().fields)
    # Field errors have a place next to their field, announced with it.
    for name in names:
        field = next(i for i in page.all("input") if i.get("name") == name)
        assert f"error-{name}" in field["aria-describedby"].split()
    html = client.get("/").get_data(as_text=True)
    assert "1 to 3600" in html  # the heartbeat range, taken from the API's own schema


def test_no_external_url_in_the_page_or_its_assets(client):
    html = client.get("/").get_data(as_text=True)
    page = parse(html)

    references = [
        attrs[key] for _, attrs in page.tags for key in ("src", "href", "action") if key in attrs
    ]
    assert references
    for ref in references:
        assert ref.startswith(("/", "#", "data:")), f"{ref} is not served by clustermon"
        assert not ref.startswith("//")
    for asset in _assets(page):
        text = fetch(client, asset)[2].decode()
        for body in (html, text):
            urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", body))
            assert urls <= {SVG_NAMESPACE}, f"external references in {asset}: {urls}"


def fetch(client, path: str) -> tuple[int, str, bytes]:
    """GET a static file and close it (an open file would leak into the next test)."""
    response = client.get(path)
    try:
        return response.status_code, response.mimetype, response.get_data()
    finally:
        response.close()


def _assets(page: Page) -> list[str]:
    scripts = [s["src"] for s in page.all("script") if "src" in s]
    styles = [s["href"] for s in page.all("link") if s.get("rel") == "stylesheet"]
    return scripts + styles


def test_the_static_assets_are_served(client):
    page = parse(client.get("/").get_data(as_text=True))

    assets = _assets(page)
    assert len(assets) == 2
    for asset in assets:
        status, mimetype, body = fetch(client, asset)
        assert status == 200, asset
        assert mimetype in ("text/css", "text/javascript", "application/javascript")
        assert len(body) > 1000
    assert fetch(client, "/static/no-such-file.js")[0] == 404


def test_the_page_forbids_foreign_scripts_and_framing(client):
    policy = client.get("/").headers["Content-Security-Policy"]

    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy


def test_the_page_carries_no_cluster_data(client, post):
    assert post(heartbeat("secret-node")).status_code == 202

    html = client.get("/").get_data(as_text=True)

    assert "secret-node" not in html  # the data comes from the API, behind the token


def test_whoami_tells_the_page_which_controls_to_show(client, tokens):
    assert client.get("/dashboard/whoami").status_code == 401
    unknown = client.get("/dashboard/whoami", headers={"Authorization": "Bearer nope"})
    assert unknown.status_code == 401
    assert unknown.mimetype == "application/problem+json"

    viewer = client.get("/dashboard/whoami", headers=tokens["viewer"]).get_json()
    admin = client.get("/dashboard/whoami", headers=tokens["admin"]).get_json()
    agent = client.get("/dashboard/whoami", headers=tokens["agent"]).get_json()

    assert viewer == {"name": "viewer-1", "role": "viewer", "admin": False}
    assert admin == {"name": "admin-1", "role": "admin", "admin": True}
    assert agent["role"] == "agent"


def test_the_targets_form_edits_exactly_what_the_api_accepts(client):
    from api.targets import TargetChangeSchema

    page = parse(client.get("/").get_data(as_text=True))
    names = {i["name"] for i in page.all("input") if i.get("id", "").startswith("target-")}
    assert names == {"server", *TargetChangeSchema().fields}
    # Each field's error has a place next to it, announced with it.
    for name in names:
        field = next(i for i in page.all("input") if i.get("id") == f"target-{name}")
        assert f"target-error-{name}" in field["aria-describedby"].split()
