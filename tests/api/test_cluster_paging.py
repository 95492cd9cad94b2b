"""`GET /cluster` for large clusters (issue #17): `server` filters by name, `limit` and `after`
page in name order with a `next` link; without them the answer is the whole view as before."""

import pytest

from tests.api.conftest import heartbeat

NAMES = [f"web{i:02d}" for i in range(12)] + ["db01", "db02", "Mail-1"]


@pytest.fixture
def cluster(post):
    beats = [heartbeat(server=name, component=c) for name in NAMES for c in ("web", "service")]
    assert post({"heartbeats": beats}).status_code == 202


def _get(client, tokens, query):
    response = client.get(f"/api/v1/cluster{query}", headers=tokens["viewer"])
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _names(view):
    return [s["name"] for s in view["servers"]]


@pytest.mark.parametrize("at", ["", "&at=2026-11-27T10:00:00Z"], ids=["live", "time travel"])
@pytest.mark.parametrize("limit", [1, 4, 15, 1000])
def test_pages_show_every_server_exactly_once(client, tokens, cluster, limit, at):
    whole = _get(client, tokens, "?" + at[1:] if at else "")
    seen, query, pages = [], f"?limit={limit}{at}", 0
    while query is not None:
        view = _get(client, tokens, query)
        assert len(view["servers"]) <= limit
        assert view["server_count"] == len(NAMES)  # always the whole cluster's
        seen += view["servers"]
        pages += 1
        link = view["page"]["next"]
        assert (link is None) == (view["page"]["next_after"] is None)
        query = link.removeprefix("/api/v1/cluster") if link else None
    assert pages == -(-len(NAMES) // limit)
    # Each server once, in name order, judged as in the whole view (ages aside: same time).
    assert seen == whole["servers"]


def test_no_paging_parameter_is_the_whole_view_as_before(client, tokens, cluster):
    view = _get(client, tokens, "")
    assert "page" not in view
    assert sorted(_names(view)) == sorted(NAMES)


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("db", ["db01", "db02"]),  # a substring
        ("MAIL", ["Mail-1"]),  # case-insensitive
        ("web0[2-4]", ["web02", "web03", "web04"]),  # a pattern: the whole name
        ("*1", ["Mail-1", "db01", "web01", "web11"]),
        ("eb1?", []),  # ...from its start
    ],
)
def test_filtering_by_name(client, tokens, cluster, server, expected):
    view = _get(client, tokens, f"?server={server}")
    assert _names(view) == expected
    assert view["page"]["returned"] == len(expected)
    assert view["page"]["next"] is None


def test_a_filtered_page_links_to_the_next_with_the_same_filter(client, tokens, cluster):
    first = _get(client, tokens, "?server=web&limit=5")
    assert _names(first) == ["web00", "web01", "web02", "web03", "web04"]
    assert first["page"]["next_after"] == "web04"
    assert first["page"]["next"] == "/api/v1/cluster?server=web&limit=5&after=web04"
    last = _get(client, tokens, "?server=web&limit=5&after=web09")
    assert _names(last) == ["web10", "web11"]
    assert last["page"]["next"] is None


@pytest.mark.parametrize(
    "query",
    ["?limit=0", "?limit=1001", "?limit=x", "?after=no/slash", "?server=", "?server=a%2Fb"],
)
def test_bad_paging_values_are_422(client, tokens, query):
    response = client.get(f"/api/v1/cluster{query}", headers=tokens["viewer"])
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    name = query[1:].partition("=")[0]
    assert name in response.get_json()["errors"]
