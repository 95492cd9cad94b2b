"""The notify follower on both databases: the log's transitions become delivery rows, one per
channel and transition, in the transaction of its checkpoint (notify/follower.py)."""

from __future__ import annotations

import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
import sqlalchemy as sa

from domain.events import ChannelConfigured, MonitorResumed, SilenceCreated
from eventstore import NewEvent
from eventstore.commands import ClusterCommands
from notify.follower import NotifyFollower
from notify.secrets import seal
from notify.tables import FOLLOWER, deliveries
from projections.audit import report_store
from projections.readmodel.runner import ProjectionRunner
from projections.readmodel.snapshots import take_snapshot
from projections.readmodel.tables import checkpoints
from scheduler.reports_job import queue_report_deliveries
from scheduler.service import SchedulerService
from tests.integration import projection_support as ps

ADMIN = {"actor": "admin"}
PUBLIC = "https://clustermon.example/"


def _channel(store, name, on=("stale", "recovered"), **fields):
    ClusterCommands(store).configure_channel(
        ChannelConfigured(
            name=name,
            kind="webhook",
            target="https://hooks.example/***",
            url_encrypted=seal(f"https://hooks.example/{name}", "test-key"),
            on=list(on),
            **fields,
        ),
        ADMIN,
    )


def _rows(store, **where):
    c = deliveries.c
    query = sa.select(deliveries).order_by(c.seq)
    for name, value in where.items():
        query = query.where(getattr(c, name) == value)
    with store.engine.connect() as conn:
        return conn.execute(query).all()


def _follower(store, clock):
    return NotifyFollower(store, clock, public_url=PUBLIC)


def _cluster(store, servers=("a", "b", "c")):
    store.append([ps.beat(store, name, "service") for name in servers])


def _expire(store, clock, *servers):
    """The sweep's commit: every named server's service timed out at one detection."""
    expired = clock() + timedelta(minutes=5)
    clock.advance(minutes=5, seconds=2)
    store.append([ps.timed_out(store, name, "service", expired) for name in servers])
    return expired


def _recover(store, clock, server, stale_since):
    store.append([ps.recovered(store, server, "service", stale_since), ps.beat(store, server)])


def test_a_timeout_gives_one_pending_row_per_matching_channel_with_reasons(store, clock):
    _cluster(store)
    _channel(store, "ops")
    _channel(store, "pager", on=["stale"])
    _channel(store, "reports-only", on=["daily_report"])
    follower = _follower(store, clock)
    follower.catch_up()
    expired = _expire(store, clock, "a")
    follower.catch_up()

    rows = _rows(store)
    assert [(r.channel, r.trigger, r.server, r.component, r.state) for r in rows] == [
        ("ops", "stale", "a", "service", "pending"),
        ("pager", "stale", "a", "service", "pending"),
    ]
    payload = orjson.loads(rows[0].payload)
    assert payload["reasons"] == ["no heartbeat for 5 min 2 s (stale timeout 5 min)"]
    assert payload["at"] == expired.isoformat()
    assert payload["link"].startswith(PUBLIC + "?at=2026-11-27T10")
    assert rows[0].next_attempt_at == clock()  # no grace: due now
    assert rows[0].id != rows[1].id


def test_a_recovery_gives_one_row_and_the_checkpoint_moves_with_the_rows(store, clock):
    _cluster(store)
    _channel(store, "ops")
    follower = _follower(store, clock)
    expired = _expire(store, clock, "a")
    clock.advance(minutes=3)
    _recover(store, clock, "a", expired)
    assert follower.catch_up() == store.head_position() == 7

    rows = _rows(store, trigger="recovered")
    assert [(r.channel, r.server, r.state) for r in rows] == [("ops", "a", "pending")]
    assert "after 3 min 2 s stale" in orjson.loads(rows[0].payload)["reasons"][0]
    with store.engine.connect() as conn:
        position = conn.execute(
            sa.select(checkpoints.c.position).where(checkpoints.c.name == FOLLOWER)
        ).scalar()
    assert position == store.head_position()


def test_catching_up_again_from_an_older_checkpoint_queues_nothing_twice(store, clock):
    _cluster(store)
    _channel(store, "ops")
    _follower(store, clock).catch_up()
    expired = _expire(store, clock, "a", "b")
    clock.advance(minutes=10)
    _recover(store, clock, "a", expired)
    _follower(store, clock).catch_up()
    before = [(r.id, r.trigger, r.state, r.payload) for r in _rows(store)]
    assert [t for _, t, _, _ in before] == ["stale", "recovered"]

    with store.engine.begin() as conn:
        conn.execute(checkpoints.update().where(checkpoints.c.name == FOLLOWER).values(position=0))
    fresh = NotifyFollower(store, clock, public_url=PUBLIC, batch_size=2)  # other batch bounds
    assert fresh.catch_up() == store.head_position()
    assert [(r.id, r.trigger, r.state, r.payload) for r in _rows(store)] == before


def test_a_recovery_within_the_grace_suppresses_both_messages(store, clock):
    _cluster(store)
    _channel(store, "patient", min_outage_seconds=600)
    _channel(store, "eager")
    follower = _follower(store, clock)
    expired = _expire(store, clock, "a")
    follower.catch_up()
    waiting = _rows(store, channel="patient")[0]
    assert waiting.state == "pending"
    assert waiting.next_attempt_at == expired + timedelta(seconds=600)

    clock.advance(minutes=2)
    _recover(store, clock, "a", expired)
    follower.catch_up()
    assert [(r.trigger, r.state, r.suppressed_by) for r in _rows(store, channel="patient")] == [
        ("stale", "suppressed", "flap"),
        ("recovered", "suppressed", "flap"),
    ]
    # A channel without grace hears both.
    assert [(r.trigger, r.state) for r in _rows(store, channel="eager")] == [
        ("stale", "pending"),
        ("recovered", "pending"),
    ]


def test_a_recovery_within_the_grace_takes_its_item_out_of_a_grouped_message(store, clock):
    _cluster(store)
    _channel(store, "patient", min_outage_seconds=600)
    follower = _follower(store, clock)
    expired = _expire(store, clock, "a", "b")
    clock.advance(minutes=1)
    _recover(store, clock, "a", expired)
    follower.catch_up()  # one batch: the stale row and its recovery together
    rows = _rows(store)
    assert [(r.trigger, r.state, r.suppressed_by) for r in rows] == [
        ("stale", "pending", None),
        ("recovered", "suppressed", "flap"),
    ]
    assert [i["server"] for i in orjson.loads(rows[0].payload)["items"]] == ["b"]


def test_a_recovery_after_the_stale_message_went_out_is_told(store, clock):
    _cluster(store)
    _channel(store, "patient", min_outage_seconds=600)
    follower = _follower(store, clock)
    expired = _expire(store, clock, "a")
    follower.catch_up()
    with store.engine.begin() as conn:  # as the sender records a delivery
        conn.execute(deliveries.update().values(state="sent", attempts=1, sent_at=clock()))
    clock.advance(minutes=1)
    _recover(store, clock, "a", expired)
    follower.catch_up()
    assert [(r.trigger, r.state) for r in _rows(store)] == [
        ("stale", "sent"),
        ("recovered", "pending"),
    ]


def test_an_active_silence_suppresses_what_it_matches(store, clock):
    _cluster(store)
    _channel(store, "ops")
    ClusterCommands(store).create_silence(
        SilenceCreated(
            id="maint-1",
            starts_at=clock() - timedelta(minutes=1),
            ends_at=clock() + timedelta(hours=1),
            servers=["a"],
            comment="patching a",
        ),
        ADMIN,
    )
    _expire(store, clock, "a")
    _expire(store, clock, "b")
    _follower(store, clock).catch_up()
    assert [(r.server, r.state, r.suppressed_by) for r in _rows(store)] == [
        ("a", "suppressed", "silence maint-1"),
        ("b", "pending", None),
    ]


def test_fifty_simultaneous_timeouts_are_one_grouped_row_per_channel(store, clock):
    names = [f"srv{i:02d}" for i in range(50)]
    _cluster(store, names)
    _channel(store, "ops", on=["stale", "cluster_outage"])
    _channel(store, "chat", on=["stale"])
    _expire(store, clock, *names)
    _follower(store, clock).catch_up()

    stale = _rows(store, trigger="stale")
    assert [(r.channel, r.server, r.component) for r in stale] == [
        ("ops", None, None),
        ("chat", None, None),
    ]
    items = orjson.loads(stale[0].payload)["items"]
    assert [i["server"] for i in items] == names
    assert all(i["reasons"] for i in items)
    # The whole cluster down: the message that matters most, to the channel that asked for it.
    assert [r.channel for r in _rows(store, trigger="cluster_outage")] == ["ops"]


def test_channel_filters_triggers_servers_enabled_and_creation_time(store, clock):
    _cluster(store)
    _channel(store, "only-b", servers=["b"])
    _channel(store, "off", enabled=False)
    expired = _expire(store, clock, "a")
    _channel(store, "late")  # configured after a's timeout: it was not there to hear it
    _expire(store, clock, "b")
    _recover(store, clock, "a", expired)
    _follower(store, clock).catch_up()
    assert [(r.channel, r.trigger, r.server) for r in _rows(store)] == [
        ("only-b", "stale", "b"),
        ("late", "stale", "b"),
        ("late", "recovered", "a"),
    ]


def test_a_flapping_component_gets_one_flapping_message(store, clock):
    _cluster(store)
    _channel(store, "ops")
    clock.advance(minutes=30)
    store.append([ps.beat(store, "b")])
    take_snapshot(store, force=True)  # a restart starts from it, and the log since
    for _ in range(3):
        expired = clock()
        clock.advance(seconds=30)
        store.append([ps.timed_out(store, "a", "service", expired)])
        clock.advance(seconds=30)
        _recover(store, clock, "a", expired)
        _follower(store, clock).catch_up()  # a new process each time: no memory but the log
    rows = _rows(store)
    assert [(r.trigger, r.state, r.suppressed_by) for r in rows] == [
        ("stale", "pending", None),
        ("recovered", "pending", None),
        ("stale", "pending", None),
        ("recovered", "suppressed", "flapping"),
        ("stale", "suppressed", "flapping"),
        ("recovered", "suppressed", "flapping"),
    ]
    assert orjson.loads(rows[2].payload)["reasons"][0].startswith("flapping:")


def test_a_stored_report_is_queued_to_the_channels_on_its_trigger(store, clock):
    _cluster(store)
    _channel(store, "mail", on=["daily_report"])
    _channel(store, "ops")
    ProjectionRunner(store).catch_up()  # the channels as the read model knows them
    clock.advance(hours=1)
    report = report_store.compute_and_store(
        store, clock() - timedelta(hours=1), clock(), kind="daily"
    )
    assert report is not None

    assert queue_report_deliveries(store, report, clock()) == 1
    assert queue_report_deliveries(store, report, clock()) == 1  # again: the same row
    rows = _rows(store)
    assert [(r.channel, r.trigger, r.state) for r in rows] == [("mail", "daily_report", "pending")]
    payload = orjson.loads(rows[0].payload)
    assert payload["trigger"] == "daily_report"
    assert payload["period"]["until"] == clock().isoformat()
    assert payload["html"].startswith("<!doctype html>")


def test_monitor_resumed_reaches_every_channel_on_it(store, clock):
    _channel(store, "ops", on=["monitor_resumed"], servers=["a"])
    down = clock()
    clock.advance(hours=1)
    store.append([NewEvent(MonitorResumed(down_since=down, resumed_at=clock(), detector="t"))])
    _follower(store, clock).catch_up()
    assert [(r.channel, r.trigger, r.server) for r in _rows(store)] == [
        ("ops", "monitor_resumed", None)
    ]


class _Receiver(ThreadingHTTPServer):
    """A local webhook receiver: keeps what it was sent."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((self.headers["Idempotency-Key"], orjson.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def receiver():
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_only_the_leader_follows_and_sends_and_a_takeover_continues(store, clock, receiver):
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    ClusterCommands(store).configure_channel(
        ChannelConfigured(
            name="ops",
            kind="webhook",
            target=f"http://127.0.0.1:{receiver.server_address[1]}/***",
            url_encrypted=seal(url, "test-key"),
            on=["stale"],
        ),
        ADMIN,
    )
    _cluster(store)
    made = [SchedulerService(store, clock, detector=name, secret_key="test-key") for name in "AB"]
    leader, standby = made
    try:
        assert leader.elect() is True
        _expire(store, clock, "a")
        standby.notify_follow_job()
        standby.notify_send_job()
        assert _rows(store) == []

        leader.projection_job()  # the sender reads the channel from the read model
        leader.notify_follow_job()
        leader.notify_send_job()
        first = _rows(store)
        assert [(r.server, r.state) for r in first] == [("a", "sent")]
        assert receiver.received == [(str(first[0].id), receiver.received[0][1])]
        assert receiver.received[0][1]["server"] == "a"

        leader.step_down()
        _expire(store, clock, "b")
        assert standby.elect() is True
        standby.projection_job()
        standby.notify_follow_job()
        standby.notify_send_job()
        assert [(r.server, r.state) for r in _rows(store)] == [("a", "sent"), ("b", "sent")]
        assert [body["server"] for _, body in receiver.received] == ["a", "b"]  # a not again
    finally:
        for service in made:
            service.step_down()
