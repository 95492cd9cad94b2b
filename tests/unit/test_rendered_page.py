"""A page of the kept view (`ViewRenderer.render_page`) is the page of `cluster_view`, and a
`ServerSelection` picks what filtering and slicing the sorted names by hand picks."""

from __future__ import annotations

import fnmatch
from datetime import timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.state import ClusterState
from projections.readmodel.current import copy_on_write_fold
from projections.readmodel.rendered import ViewRenderer
from projections.readmodel.view import ServerSelection, cluster_view, page_of
from tests.unit.projection_helpers import Log

NAMES = st.sampled_from(["a1", "a2", "B1", "b2", "c-10", "web01", "web02", "x"])
FILTERS = st.one_of(st.none(), st.sampled_from(["a", "b", "1", "web0?", "*1*", "[ab]?", "zz"]))
SELECTIONS = st.builds(
    ServerSelection,
    server=FILTERS,
    after=st.one_of(st.none(), NAMES, st.just("b")),
    limit=st.one_of(st.none(), st.integers(1, 9)),
)


def _page(returned, next_after):
    return {"returned": returned, "next_after": next_after}


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(NAMES, st.sampled_from(["web", "service"]), st.integers(0, 400), SELECTIONS),
        min_size=1,
        max_size=30,
    )
)
def test_a_rendered_page_is_the_page_of_the_view(steps):
    log, renderer = Log(), ViewRenderer()
    state = ClusterState()
    for server, component, wait, selection in steps:
        log.advance(seconds=wait)
        state = copy_on_write_fold(state, [log.heartbeat(server, component)])
        now = log.now + timedelta(seconds=wait)
        if wait % 3 == 0:  # the whole view too, now and then: both share the entries
            renderer.render(state, now)
        page = b"".join(renderer.render_page(state, now, selection, _page))
        view = orjson.loads(orjson.dumps(cluster_view(state, now)))
        assert orjson.loads(page) == page_of(view, selection, _page)


@given(names=st.lists(NAMES, unique=True).map(sorted), selection=SELECTIONS)
def test_a_selection_picks_the_matching_names_after_the_cursor(names, selection):
    expected = [n for n in names if selection.after is None or n > selection.after]
    if selection.server is not None:
        if set("*?[") & set(selection.server):
            expected = [n for n in expected if fnmatch.fnmatchcase(n.lower(), selection.server)]
        else:
            expected = [n for n in expected if selection.server.lower() in n.lower()]
    picked, next_after = selection.pick(names)
    if selection.limit is None or len(expected) <= selection.limit:
        assert (picked, next_after) == (expected, None)
    else:
        assert picked == expected[: selection.limit]
        assert next_after == picked[-1]
