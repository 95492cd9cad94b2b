"""The /health poller on both databases, against real local HTTP(S) servers: what an operator
sees in the log and in `target_polls` after polls of good, odd and failing product servers."""

from __future__ import annotations

import ssl
import threading
import time
from datetime import timedelta

import orjson
import pytest
import trustme

from collector.fake_product import Answer, FakeProducts, example, serve_in_thread, target_url
from collector.poll_log import last_polls
from collector.poller import Poller, grid_after, poll_event_id, targets_due_now
from domain.events import COLLECTOR_ACTOR
from eventstore.commands import ClusterCommands
from scheduler.deadlines import DeadlineIndex

ADMIN = {"actor": "admin", "role": "admin", "source": "127.0.0.1", "correlation_id": None}
SERVERS = ["proget01", "proget02", "proget03"]


class Harness:
    """A store, the commands, an index following the log (as the scheduler's) and a poller."""

    def __init__(self, store, clock):
        self.store = store
        self.clock = clock
        self.commands = ClusterCommands(store)
        self.index = DeadlineIndex()
        self.polled: list = []
        self.poller = Poller(self.commands, clock, on_poll=self.polled.append)

    def target(self, server: str, url: str, **settings) -> None:
        self.commands.configure_target(server, {"url": url, **settings}, ADMIN)

    def remove(self, server: str) -> None:
        self.commands.remove_target(server, ADMIN)

    def follow(self):
        self.index.follow(self.store)
        self.poller.follow(self.index.state)
        return self.index.state

    def poll(self) -> dict:
        """Follow the log, then poll what is due now: {server: PollResult}."""
        self.follow()
        return {r.server: r for r in self.poller.run_once()}

    def events(self, type_: str) -> list:
        return [r for r in self.store.read_all(limit=None) if r.type == type_]

    def heartbeats(self, server: str) -> dict:
        """The last heartbeat of each component of `server`: {component: event}."""
        return {
            r.event.component: r.event
            for r in self.events("HeartbeatRecorded")
            if r.event.server == server
        }

    def failures(self, server: str) -> list[tuple[str, str]]:
        return [
            (r.event.kind, r.event.detail)
            for r in self.events("CollectionFailed")
            if r.event.server == server
        ]

    def row(self, server: str):
        return last_polls(self.store.engine)[server]


@pytest.fixture
def fakes():
    products = FakeProducts(SERVERS)
    base, stop = serve_in_thread(products)
    products.url = lambda name: target_url(base, name)  # type: ignore[attr-defined]
    yield products
    stop()


@pytest.fixture
def harness(store, clock):
    made = Harness(store, clock)
    yield made
    made.poller.close()


def test_a_good_poll_records_both_heartbeats_through_the_ingest_path(harness, fakes, clock):
    harness.target("proget01", fakes.url("proget01"))
    result = harness.poll()["proget01"]

    assert result.receipt.accepted == 2
    beats = harness.heartbeats("proget01")
    assert set(beats) == {"web", "service"}
    for beat in beats.values():
        assert (beat.status, beat.product, beat.product_version, beat.message) == (
            "ok",
            "ProGet",
            "23.0.27",
            None,
        )
        assert beat.sent_at == clock.now  # when the answer came, on our clock
    recorded = harness.events("HeartbeatRecorded")
    assert {r.metadata["actor"] for r in recorded} == {COLLECTOR_ACTOR}
    assert {r.metadata["source"] for r in recorded} == {"127.0.0.1"}
    assert {r.event_id for r in recorded} == {
        poll_event_id("proget01", c, result.due) for c in ("web", "service")
    }
    state = harness.follow()
    assert state.component("proget01", "service").status == "ok"
    row = harness.row("proget01")
    assert (row.at, row.ok, row.error) == (clock.now, True, None)
    assert 0 <= row.seconds < 2


def _document(**changes):
    document = example("ProGet")
    for name, value in changes.items():
        if value is ...:
            document.pop(name)
        else:
            document[name] = value
    return document


@pytest.mark.parametrize(
    ("document", "web", "service"),
    [
        pytest.param(
            _document(serviceStatus="Error", serviceStatusDetail="Service is not running."),
            ("ok", None),
            ("error", "service status Error: Service is not running."),
            id="service-error",
        ),
        pytest.param(
            _document(databaseStatus="Error", databaseStatusDetails="Login failed for user."),
            ("warning", "database Error: Login failed for user."),
            ("ok", None),
            id="database-error",
        ),
        pytest.param(
            _document(licenseStatus="Expired", licenseStatusDetail=None, serviceStatus=None),
            ("warning", "license Expired"),
            ("error", "no serviceStatus"),
            id="nulls",
        ),
        pytest.param(
            _document(
                extensionsInstalled=["ProGetCoreEx", "InedoCore"],
                releaseNumber=...,
                versionNumber="DEV BUILD",
                replicationStatus=...,
                databaseStatusDetails=...,
            ),
            ("ok", None),
            ("ok", None),
            id="older-release",
        ),
    ],
)
def test_odd_documents_map_to_the_documented_statuses(harness, fakes, document, web, service):
    fakes.answer("proget02", Answer(body=orjson.dumps(document)))
    harness.target("proget02", fakes.url("proget02"))
    assert harness.poll()["proget02"].receipt.accepted == 2
    beats = harness.heartbeats("proget02")
    assert (beats["web"].status, beats["web"].message) == web
    assert (beats["service"].status, beats["service"].message) == service
    if "versionNumber" in document and "releaseNumber" not in document:
        assert beats["web"].product_version == "DEV BUILD"


def test_a_failure_is_recorded_once_when_it_starts_and_again_when_its_kind_changes(
    harness, fakes, clock
):
    harness.target("proget01", fakes.url("proget01"), interval_seconds=30)
    fakes.answer("proget01", Answer(500, b"System.NullReferenceException: x\n   at A.B()"))
    first = harness.poll()["proget01"]
    assert first.failure_event is not None
    assert harness.failures("proget01") == [
        ("http_status", "HTTP 500: System.NullReferenceException: x")
    ]
    assert harness.heartbeats("proget01") == {}  # a failed poll records no heartbeat

    # The same failure again, polled without the index having followed (the very next poll):
    # no second event.
    harness.poller.poll(targets_due_now([harness.index.state.targets["proget01"]], clock.now))
    clock.advance(seconds=30)
    assert harness.poll()["proget01"].failure_event is None
    assert len(harness.failures("proget01")) == 1
    assert harness.row("proget01").at == clock.now  # but every poll has its row

    fakes.answer("proget01", Answer(200, b"<html>Sign in</html>", "text/html"))
    clock.advance(seconds=30)
    harness.poll()
    assert [kind for kind, _ in harness.failures("proget01")] == ["http_status", "not_health"]
    state = harness.follow()
    assert state.targets["proget01"].failure.kind == "not_health"

    fakes.answer("proget01", None)  # healthy again: the heartbeats end the failure
    clock.advance(seconds=30)
    assert harness.poll()["proget01"].receipt.accepted == 2
    assert harness.follow().targets["proget01"].failure is None
    row = harness.row("proget01")
    assert (row.ok, row.error) == (True, None)

    fakes.answer("proget01", Answer(hang_up=True))  # failing again: a new event
    clock.advance(seconds=30)
    harness.poll()
    assert [kind for kind, _ in harness.failures("proget01")] == [
        "http_status",
        "not_health",
        "refused",
    ]


def test_each_kind_of_failure_is_classified_and_worded(harness, fakes, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    port = fakes.url("proget01").rsplit(":", 1)[1].split("/")[0]
    fakes.answer("proget02", Answer(302, headers=(("Location", f"http://localhost:{port}/login"),)))
    big = orjson.dumps({"applicationName": "ProGet", "padding": "x" * (2 << 20)})
    fakes.answer("proget03", Answer(200, big, chunked=True))
    harness.target("refused", f"http://127.0.0.1:{closed_port}")
    harness.target("dns", "http://proget.clustermon-test.invalid")
    harness.target("proget02", fakes.url("proget02"))
    harness.target("proget03", fakes.url("proget03"))
    harness.poll()
    assert {s: harness.failures(s) for s in ("refused", "dns", "proget02", "proget03")} == {
        "refused": [("refused", "connection refused")],
        "dns": [("dns", "name not found")],
        "proget02": [
            (
                "http_status",
                f"HTTP 302: redirect to http://localhost:{port} refused"
                " (only the same host is followed)",
            )
        ],
        "proget03": [("not_health", "not a health document: the answer is over 1 MB")],
    }
    assert harness.row("dns").error == "name not found"
    assert harness.row("dns").ok is False


def test_tls_is_verified_unless_the_target_says_not_to(harness, tmp_path):
    ca = trustme.CA()
    pem = tmp_path / "self-signed.pem"
    pem.write_bytes(ca.private_key_pem.bytes() + ca.cert_pem.bytes())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pem)
    products = FakeProducts(["secure01", "secure02"])
    base, stop = serve_in_thread(products, ssl_context=context)
    try:
        harness.target("secure01", target_url(base, "secure01"))
        harness.target("secure02", target_url(base, "secure02"), verify_tls=False)
        harness.poll()
    finally:
        stop()
    assert harness.failures("secure01") == [
        ("tls", "certificate verify failed: self-signed certificate")
    ]
    assert set(harness.heartbeats("secure02")) == {"web", "service"}


def test_the_same_poll_appended_twice_is_a_duplicate(harness, fakes, clock):
    harness.target("proget01", fakes.url("proget01"))
    target = harness.follow().targets["proget01"]
    due = grid_after("proget01", 30, clock.now)
    first = harness.poller.poll([(target, due)])[0]
    clock.advance(seconds=1)
    again = harness.poller.poll([(target, due)])[0]  # a retry, or the next leader
    later = harness.poller.poll([(target, due + timedelta(seconds=30))])[0]
    assert [r.receipt.accepted for r in (first, again, later)] == [2, 0, 2]
    assert again.receipt.duplicates == 2
    assert len(harness.events("HeartbeatRecorded")) == 4


def test_a_slow_target_does_not_delay_a_fast_one(harness, fakes):
    fakes.answer("proget02", Answer(body=orjson.dumps(example()), delay=5))
    harness.target("proget01", fakes.url("proget01"), timeout_seconds=1)
    harness.target("proget02", fakes.url("proget02"), timeout_seconds=1)
    recorded_after: dict[str, float] = {}
    started = time.monotonic()
    harness.poller.on_poll = lambda r: recorded_after.setdefault(
        r.server, time.monotonic() - started
    )
    results = harness.poll()

    assert results["proget02"].outcome.kind == "timeout"
    assert results["proget01"].receipt.accepted == 2
    # The fast one's heartbeats were in the log long before the slow one gave up.
    assert recorded_after["proget01"] < 0.5 <= 1.0 <= recorded_after["proget02"] < 3


def test_a_poll_of_a_target_removed_meanwhile_is_dropped(harness, fakes):
    fakes.answer("proget01", Answer(body=orjson.dumps(example()), delay=0.5))
    harness.target("proget01", fakes.url("proget01"))
    harness.follow()
    results = []
    polling = threading.Thread(target=lambda: results.extend(harness.poller.run_once()))
    polling.start()
    deadline = time.monotonic() + 5
    while fakes.requests == 0:  # the request is at the server
        assert time.monotonic() < deadline
        time.sleep(0.01)
    harness.remove("proget01")
    harness.follow()
    polling.join(10)
    assert [r.dropped for r in results] == [True]
    assert harness.heartbeats("proget01") == {}
    assert "proget01" not in last_polls(harness.store.engine)


def test_a_new_poller_resumes_each_target_after_its_last_poll(harness, fakes, clock, store):
    harness.target("proget01", fakes.url("proget01"), interval_seconds=30)
    harness.poll()
    last = harness.row("proget01").at
    successor = Poller(harness.commands, clock)  # the next leader
    try:
        successor.follow(harness.index.state)
        clock.advance(seconds=1)
        assert successor.run_once() == []  # polled a second ago: not due yet
        due = grid_after("proget01", 30, last)
        clock.now = due
        [result] = successor.run_once()
        assert result.due == due
        assert result.receipt.accepted == 2
    finally:
        successor.close()


def test_a_changed_target_is_polled_at_once_and_a_removed_one_no_more(harness, fakes, clock):
    harness.target("proget01", fakes.url("proget01"), interval_seconds=60)
    harness.target("proget02", fakes.url("proget02"), interval_seconds=60)
    assert set(harness.poll()) == {"proget01", "proget02"}
    clock.advance(seconds=5)
    assert harness.poll() == {}
    harness.target("proget01", fakes.url("proget03"))  # another URL
    harness.remove("proget02")
    assert set(harness.poll()) == {"proget01"}
    clock.advance(seconds=120)
    assert set(harness.poll()) == {"proget01"}


def test_due_times_spread_targets_over_their_interval_the_same_way_for_every_leader():
    from collections import Counter
    from datetime import UTC, datetime

    from collector.poller import grid_at_or_before, next_due

    now = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    first = {f"proget{i:04d}": grid_after(f"proget{i:04d}", 30, now) for i in range(1000)}
    assert all(now < due <= now + timedelta(seconds=30) for due in first.values())
    per_second = Counter(int((due - now).total_seconds()) for due in first.values())
    assert max(per_second.values()) < 60  # ~33 a second, never all at once
    server, due = "proget0001", first["proget0001"]
    assert grid_after(server, 30, now) == due  # another leader computes the same
    assert next_due(server, 30, due, due) == due + timedelta(seconds=30)
    # Late by three intervals: the missed polls are not made up, the last one is polled.
    late = due + timedelta(seconds=95)
    assert next_due(server, 30, due, late) == grid_at_or_before(server, 30, late)
    assert grid_at_or_before(server, 30, late) == due + timedelta(seconds=90)
