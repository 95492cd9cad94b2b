"""Targets on real databases: the commands append what the decisions say, and the read tables
keep the folded targets (what GET /targets and the reasons read) through restarts and rebuilds."""

from __future__ import annotations

import sqlalchemy as sa

from domain.events import COLLECTOR_ACTOR, CollectionFailed, HeartbeatRecorded
from eventstore import NewEvent
from eventstore.commands import ClusterCommands
from projections.readmodel import rows as readmodel
from projections.readmodel.rebuild import rebuild
from projections.readmodel.runner import ProjectionRunner

ADMIN = {"actor": "admin-1", "role": "admin"}


def _tables_state(store):
    with store.engine.connect() as conn:
        return readmodel.load_state(conn)


def test_configure_change_fail_and_remove_through_the_read_tables(store, clock):
    commands = ClusterCommands(store)
    runner = ProjectionRunner(store)
    target, recorded = commands.configure_target("p1", {"url": "https://p1:8624"}, ADMIN)
    assert (target.url, target.interval_seconds, target.verify_tls) == ("https://p1:8624", 30, True)
    assert recorded is not None and recorded.metadata["actor"] == "admin-1"
    assert commands.configure_target("p1", {"url": "https://p1:8624"}, ADMIN)[1] is None
    commands.configure_target("p1", {"interval_seconds": 60}, ADMIN)
    failure = CollectionFailed(server="p1", kind="dns", detail="name not found", at=clock())
    assert commands.record_collection_failure(failure, {"actor": COLLECTOR_ACTOR}) is not None
    runner.catch_up()
    kept = _tables_state(store).targets["p1"]
    assert (kept.url, kept.interval_seconds, kept.failure.kind) == ("https://p1:8624", 60, "dns")

    # The collector's next good poll ends the failure; the tables follow.
    beat = HeartbeatRecorded(server="p1", component="web", sent_at=clock())
    commands.record_heartbeats([NewEvent(beat, metadata={"actor": COLLECTOR_ACTOR})])
    runner.catch_up()
    assert _tables_state(store).targets["p1"].failure is None

    commands.remove_target("p1", ADMIN)
    assert commands.record_collection_failure(failure, {"actor": COLLECTOR_ACTOR}) is None
    runner.catch_up()
    assert _tables_state(store).targets == {}


def test_a_rebuild_puts_the_targets_back(store):
    commands = ClusterCommands(store)
    commands.configure_target("p1", {"url": "http://p1"}, ADMIN)
    commands.configure_target("p2", {"url": "http://p2", "verify_tls": False}, ADMIN)
    ProjectionRunner(store).catch_up()
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM cluster_view_targets"))
    rebuild(store)
    targets = _tables_state(store).targets
    assert sorted(targets) == ["p1", "p2"] and targets["p2"].verify_tls is False
