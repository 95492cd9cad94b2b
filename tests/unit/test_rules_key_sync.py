"""Encryption key in sync, judged per product (issue #18, item 5): each product has its own key
by design, so a BuildMaster server beside ProGet servers is not out of sync; components that
name no product keep the cluster-wide reference."""

from __future__ import annotations

from datetime import timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import rules
from domain.state import fold
from projections.readmodel.rendered import ViewRenderer
from projections.readmodel.view import cluster_view
from tests.unit.projection_helpers import KEY_A, KEY_B, Log

KEY_C = "c" * 64


def _servers(log, now=None):
    return {s["name"]: s for s in cluster_view(fold(log.events), now or log.now)["servers"]}


def test_each_product_has_its_own_key_and_none_raises_a_false_alarm():
    log = Log()
    for name in ("proget01", "proget02", "proget03"):
        log.heartbeat(name, product="ProGet", encryption_key_fingerprint=KEY_A)
    log.heartbeat("bm01", product="BuildMaster", encryption_key_fingerprint=KEY_B)
    log.heartbeat("otter01", product="Otter", encryption_key_fingerprint=KEY_C)
    servers = _servers(log)
    assert {name: s["encryption_key_in_sync"] for name, s in servers.items()} == {
        "bm01": True,
        "otter01": True,
        "proget01": True,
        "proget02": True,
        "proget03": True,
    }
    assert all(s["health"] == "ok" for s in servers.values())


def test_within_a_product_the_minority_key_is_an_error_naming_the_product():
    log = Log()
    log.heartbeat("bm01", product="BuildMaster", encryption_key_fingerprint=KEY_B)
    log.heartbeat("bm02", product="BuildMaster", encryption_key_fingerprint=KEY_B)
    log.heartbeat("bm03", product="BuildMaster", encryption_key_fingerprint=KEY_A)
    # Three ProGet servers with KEY_A: the cluster-wide majority no longer decides BuildMaster's.
    for name in ("proget01", "proget02", "proget03"):
        log.heartbeat(name, product="ProGet", encryption_key_fingerprint=KEY_A)
    servers = _servers(log)
    assert servers["bm01"]["encryption_key_in_sync"] is True
    assert servers["bm03"]["encryption_key_in_sync"] is False
    assert servers["bm03"]["health"] == "error"
    assert servers["bm03"]["reasons"] == [
        "encryption key differs from the rest of the BuildMaster servers: decryption fails and"
        " users are asked to log in again"
    ]
    assert all(servers[f"proget0{i}"]["encryption_key_in_sync"] for i in (1, 2, 3))


def test_a_tie_within_a_product_leaves_that_product_without_a_reference_only():
    log = Log()
    log.heartbeat("bm01", product="BuildMaster", encryption_key_fingerprint=KEY_A)
    log.heartbeat("bm02", product="BuildMaster", encryption_key_fingerprint=KEY_B)
    log.heartbeat("proget01", product="ProGet", encryption_key_fingerprint=KEY_C)
    servers = _servers(log)
    assert servers["bm01"]["encryption_key_in_sync"] is False
    assert servers["bm02"]["encryption_key_in_sync"] is False
    assert (
        "BuildMaster servers report different encryption keys and none is in the majority"
        in (servers["bm01"]["reasons"][0])
    )
    assert servers["proget01"]["encryption_key_in_sync"] is True


def test_components_without_a_product_keep_the_cluster_wide_reference():
    log = Log()
    log.heartbeat("proget01", product="ProGet", encryption_key_fingerprint=KEY_A)
    log.heartbeat("proget02", product="ProGet", encryption_key_fingerprint=KEY_A)
    log.heartbeat("bm01", product="BuildMaster", encryption_key_fingerprint=KEY_B)
    log.heartbeat("agent01", product=None, encryption_key_fingerprint=KEY_A)
    log.heartbeat("agent02", product=None, encryption_key_fingerprint=KEY_B)
    servers = _servers(log)
    # Cluster-wide, KEY_A is reported 3 times, KEY_B twice.
    assert servers["agent01"]["encryption_key_in_sync"] is True
    assert servers["agent02"]["encryption_key_in_sync"] is False
    assert servers["agent02"]["reasons"][0].startswith(
        "encryption key differs from the rest of the cluster"
    )
    assert servers["bm01"]["encryption_key_in_sync"] is True


def test_a_product_none_of_whose_components_is_current_draws_its_key_from_all_of_them():
    log = Log()
    log.heartbeat("bm01", product="BuildMaster", encryption_key_fingerprint=KEY_B)
    log.heartbeat("bm02", product="BuildMaster", encryption_key_fingerprint=KEY_B)
    log.advance(minutes=10)  # the BuildMaster services are stale...
    log.heartbeat("proget01", product="ProGet", encryption_key_fingerprint=KEY_A)
    servers = _servers(log)
    # ...which is their error, not a key they never changed.
    assert servers["bm01"]["encryption_key_in_sync"] is True
    assert not any("encryption key" in r for r in servers["bm01"]["reasons"])
    assert servers["proget01"]["encryption_key_in_sync"] is True


def test_references_name_each_products_key():
    log = Log()
    log.heartbeat("p1", product="ProGet", encryption_key_fingerprint=KEY_A)
    log.heartbeat("b1", product="BuildMaster", encryption_key_fingerprint=KEY_B)
    log.heartbeat("b2", product="BuildMaster", encryption_key_fingerprint=KEY_B)
    refs = rules.references(fold(log.events), set())
    assert refs.fingerprints == {"ProGet": KEY_A, "BuildMaster": KEY_B}
    assert refs.key_reference("ProGet") == KEY_A
    assert refs.key_reference(None) == KEY_B  # cluster-wide: 2 against 1
    assert refs.key_reference("Otter") is None  # nothing reported: no reference


# --- the view, the renderer and the rules agree, with several products --------------------

BEAT = st.tuples(
    st.just("beat"),
    st.sampled_from(["a", "b", "c", "d"]),
    st.sampled_from(["web", "service"]),
    st.sampled_from(["ProGet", "BuildMaster", None]),
    st.sampled_from([KEY_A, KEY_B, KEY_C, None]),
)
STEP = st.one_of(BEAT, BEAT, st.tuples(st.just("wait"), st.integers(0, 600)))


def _by_the_rules(state, now):
    config = state.configuration
    beats = {
        (c.server, c.name): rules.heartbeat(c, config, now, state.monitor_resumed_at)
        for c in state.components()
    }
    refs = rules.references(state, {k for k, b in beats.items() if b.state == "current"})
    out = {}
    for server in state.servers.values():
        findings = []
        for c in sorted(server.components.values(), key=lambda c: c.name):
            health, reasons = rules.component_health(c, config, beats[(server.name, c.name)])
            findings.append((c.name, health, reasons))
        key_ok = rules.key_in_sync(server, refs)
        version_ok = rules.version_in_sync(server, refs)
        health, reasons = rules.server_health(findings, version_ok, key_ok, refs, server)
        out[server.name] = (key_ok, health, reasons)
    return out


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(STEP, min_size=1, max_size=20), later=st.integers(0, 900))
def test_view_renderer_and_rules_agree_on_key_sync_across_products(steps, later):
    log, renderer = Log(), ViewRenderer()
    for step in steps:
        if step[0] == "beat":
            _, server, component, product, key = step
            log.heartbeat(server, component, product=product, encryption_key_fingerprint=key)
        else:
            log.advance(seconds=step[1])
        state = fold(log.events)
        now = log.now + timedelta(seconds=later)
        view = orjson.loads(orjson.dumps(cluster_view(state, now)))
        assert orjson.loads(renderer.render(state, now)) == view
        by_rules = _by_the_rules(state, now)
        assert {
            s["name"]: (s["encryption_key_in_sync"], s["health"], s["reasons"])
            for s in view["servers"]
        } == by_rules
