"""The event store's contract, run against a SQLite file (WAL) and a real PostgreSQL.

Every test here runs on both databases through the `store`/`engine` fixtures; the few that are
about PostgreSQL-only behaviour (NOTIFY, pooled connections) say so with `pg_database_url`.
"""

from __future__ import annotations

import os
import threading
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest
import sqlalchemy as sa

from domain.events import ComponentRemoved, ConfigurationChanged, HeartbeatRecorded
from eventstore import create_engine, open_store, write_connection
from eventstore.postgres_heartbeats import append_current_heartbeats
from eventstore.store import NOTIFY_CHANNEL, ConcurrencyError, NewEvent
from eventstore.tables import events as events_table

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def beat(server: str = "web01", component: str = "service", **fields) -> NewEvent:
    event_id = fields.pop("event_id", None) or uuid.uuid4()
    occurred_at = fields.pop("occurred_at", None)
    sent_at = fields.pop("sent_at", T0)
    return NewEvent(
        HeartbeatRecorded(server=server, component=component, sent_at=sent_at, **fields),
        event_id=event_id,
        occurred_at=occurred_at,
        metadata={"actor": "agent-1", "source": "10.0.0.5"},
    )


def removal(server: str, component: str = "service") -> NewEvent:
    return NewEvent(ComponentRemoved(server=server, component=component, reason="decommissioned"))


def count_rows(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(events_table)).scalar_one()


# --- appending and reading a stream -----------------------------------------------------------


def test_append_then_read_a_stream_from_a_version(store):
    result = store.append([beat(status="ok"), beat(status="warning"), beat(status="error")])

    assert [r.version for r in result.recorded] == [1, 2, 3]
    assert result.duplicates == []
    stream = store.read_stream("web01/service")
    assert [r.event.status for r in stream] == ["ok", "warning", "error"]
    assert [r.position for r in stream] == [r.position for r in result.recorded]
    assert [r.version for r in store.read_stream("web01/service", from_version=2)] == [2, 3]
    assert [r.version for r in store.read_stream("web01/service", 2, limit=1)] == [2]
    assert store.read_stream("web02/service") == []
    assert store.stream_version("web01/service") == 3
    assert store.stream_version("nobody/web") == 0


def test_what_is_read_back_equals_what_was_appended(store, clock):
    new = beat(
        os="Ubuntu",
        os_version="24.04",
        ip="10.0.0.5",
        product="ProGet",
        product_version="2025.10",
        encryption_key_fingerprint="ab" * 32,
        occurred_at=T0,
    )
    recorded = store.append([new]).recorded[0]

    (read,) = store.read_all()
    assert read == recorded
    assert read.event == new.event
    assert read.event_id == new.event_id
    assert read.metadata == {"actor": "agent-1", "source": "10.0.0.5"}
    assert read.occurred_at == T0
    assert read.recorded_at == clock.now
    assert read.schema_version == HeartbeatRecorded.schema_version


def test_recorded_at_comes_from_the_injected_clock(store, clock):
    first = store.append([beat()]).recorded[0]
    clock.advance(minutes=7)
    second = store.append([beat(occurred_at=T0)]).recorded[0]

    assert first.recorded_at == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert second.recorded_at == datetime(2026, 11, 27, 10, 7, tzinfo=UTC)
    # Without a sender's clock, occurred_at is our clock; with one, it is kept as sent.
    assert first.occurred_at == first.recorded_at
    assert second.occurred_at == T0
    assert [r.recorded_at for r in store.read_all()] == [first.recorded_at, second.recorded_at]


# --- the global log ---------------------------------------------------------------------------


def test_head_position_and_the_log_after_a_position_with_a_limit(store):
    assert store.head_position() == 0
    assert store.read_all() == []
    result = store.append([beat(f"web{i:02d}") for i in range(5)])
    positions = [r.position for r in result.recorded]

    assert store.head_position() == positions[-1] == result.last_position
    assert positions == sorted(positions)
    assert [r.position for r in store.read_all()] == positions
    assert [r.position for r in store.read_all(after=positions[1], limit=2)] == positions[2:4]
    assert store.read_all(after=positions[-1]) == []
    assert [r.position for r in store.read_all(up_to=positions[2])] == positions[:3]


def test_read_by_recorded_at_range(store, clock):
    t1 = clock.now
    a = store.append([beat("a")]).recorded[0]
    t2 = clock.advance(minutes=1)
    b = store.append([beat("b")]).recorded[0]
    t3 = clock.advance(minutes=1)
    c = store.append([beat("c")]).recorded[0]

    def servers(**bounds):
        return [r.event.server for r in store.read_all(**bounds)]

    assert servers(since=t2) == ["b", "c"]  # since: inclusive
    assert servers(until=t3) == ["a", "b"]  # until: exclusive
    assert servers(since=t2, until=t3) == ["b"]
    assert servers(since=t1 - timedelta(days=1), until=t1) == []
    assert (a.recorded_at, b.recorded_at, c.recorded_at) == (t1, t2, t3)


def test_filters_by_type_stream_and_stream_prefix(store):
    store.append(
        [
            beat("web_1", "web"),
            beat("web_1", "service"),
            beat("webX1", "web"),
            removal("web_1", "web"),
            NewEvent(ConfigurationChanged(changes={"stale_timeout_seconds": 120})),
        ]
    )

    def kinds(**filters):
        return [(r.type, r.stream) for r in store.read_all(**filters)]

    assert kinds(types=["ComponentRemoved", "ConfigurationChanged"]) == [
        ("ComponentRemoved", "web_1/web"),
        ("ConfigurationChanged", "cluster"),
    ]
    assert kinds(streams=["web_1/web"]) == [
        ("HeartbeatRecorded", "web_1/web"),
        ("ComponentRemoved", "web_1/web"),
    ]
    # "_" is a LIKE wildcard: the prefix must match literally, so webX1 is not included.
    assert [s for _, s in kinds(stream_prefix="web_1/")] == [
        "web_1/web",
        "web_1/service",
        "web_1/web",
    ]
    assert kinds(types=["HeartbeatRecorded"], stream_prefix="webX") == [
        ("HeartbeatRecorded", "webX1/web")
    ]


def test_iter_all_pages_through_the_whole_log(store, clock):
    store.append([beat(f"s{i:03d}") for i in range(25)])
    clock.advance(hours=1)
    later = store.append([beat(f"t{i:03d}") for i in range(5)]).recorded

    everything = list(store.iter_all(batch_size=7))
    assert len(everything) == 30
    assert [r.position for r in everything] == [r.position for r in store.read_all(limit=None)]
    assert [r.event.server for r in store.iter_all(after=later[1].position, batch_size=2)] == [
        "t002",
        "t003",
        "t004",
    ]
    assert len(list(store.iter_all(up_to=later[0].position, batch_size=4))) == 26
    assert len(list(store.iter_all(until=clock.now, batch_size=4))) == 25


def test_an_abandoned_replay_gives_its_connections_back(store):
    store.append([beat(f"s{i:03d}") for i in range(30)])
    for _ in range(20):  # more replays than the pool holds connections
        replay = store.iter_all(batch_size=10)
        assert next(replay).event.server == "s000"
        replay.close()

    assert store.engine.pool.checkedout() == 0
    # 30 is a whole number of pages: the replay ends on the empty one.
    assert [r.event.server for r in store.iter_all(batch_size=10)][-2:] == ["s028", "s029"]


# --- atomic batches and optimistic concurrency --------------------------------------------------


def test_many_streams_in_one_append_share_one_transaction(store, clock):
    result = store.append(
        [beat("a"), beat("b"), beat("a"), NewEvent(ConfigurationChanged(changes={}))],
        expected_version={"a/service": 0, "b/service": 0, "cluster": 0},
    )
    recorded = result.recorded

    assert [(r.stream, r.version) for r in recorded] == [
        ("a/service", 1),
        ("b/service", 1),
        ("a/service", 2),
        ("cluster", 1),
    ]
    assert {r.recorded_at for r in recorded} == {clock.now}
    # The log keeps the batch's order, without anything in between.
    positions = [r.position for r in recorded]
    assert positions == list(range(positions[0], positions[0] + 4))


def test_a_stale_expected_version_raises_and_writes_nothing(store):
    store.append([beat("a"), beat("a"), beat("b")])
    head = store.head_position()

    with pytest.raises(ConcurrencyError) as caught:
        store.append(
            [beat("b"), beat("a"), beat("c")],
            expected_version={"a/service": 1, "b/service": 1, "c/service": 0},
        )

    assert (caught.value.stream, caught.value.expected, caught.value.actual) == ("a/service", 1, 2)
    assert "a/service" in str(caught.value)
    # Nothing of the batch is written: not the stream in conflict, not the others.
    assert store.head_position() == head
    assert store.stream_version("b/service") == 1
    assert store.stream_version("c/service") == 0


def test_an_int_expected_version_checks_the_single_stream(store):
    store.append([beat()], expected_version=0)
    store.append([beat(), beat()], expected_version=1)
    with pytest.raises(ConcurrencyError):
        store.append([beat()], expected_version=1)
    with pytest.raises(ConcurrencyError):
        store.append([beat()], expected_version=0)
    assert store.stream_version("web01/service") == 3
    with pytest.raises(ValueError, match="one stream"):
        store.append([beat("a"), beat("b")], expected_version=0)


def test_a_concurrency_error_leaves_the_callers_transaction_usable(store, engine):
    store.append([beat("a")])
    with write_connection(engine) as conn, conn.begin():
        with pytest.raises(ConcurrencyError):
            store.append([beat("a")], expected_version=0, connection=conn)
        retried = store.append([beat("a")], expected_version=1, connection=conn)
    assert [r.version for r in retried.recorded] == [2]
    assert store.stream_version("a/service") == 2


@pytest.mark.parametrize("size", [3, 40], ids=["small", "large"])
def test_appends_on_a_commit_as_you_go_connection_wait_for_its_commit(store, engine, size):
    with write_connection(engine) as conn:
        store.append([beat(f"s{i}") for i in range(size)], connection=conn)
        assert count_rows(engine) == 0  # not visible before the caller commits
        conn.commit()
        store.append([beat("late")], connection=conn)
        # closed without commit: rolled back
    assert count_rows(engine) == size


def test_a_1000_event_batch_is_one_transaction(store, engine):
    batch = [beat(f"srv{i // 2:03d}", ("web", "service")[i % 2]) for i in range(1000)]

    # In the caller's transaction: rolled back as a whole, nothing of it remains.
    with write_connection(engine) as conn, conn.begin() as tx:
        assert len(store.append(batch, connection=conn).recorded) == 1000
        tx.rollback()
    assert count_rows(engine) == 0

    # One stale stream among the 1,000 streams: nothing is written.
    with pytest.raises(ConcurrencyError):
        store.append(batch, expected_version={"srv499/service": 5})
    assert count_rows(engine) == 0

    result = store.append(batch)
    assert len(result.recorded) == 1000
    assert {r.recorded_at for r in result.recorded} == {result.recorded[0].recorded_at}
    assert [r.position for r in store.read_all(limit=None)] == [r.position for r in result.recorded]
    assert [r.event_id for r in store.read_all(limit=None)] == [n.event_id for n in batch]


# --- duplicates -------------------------------------------------------------------------------


def test_a_repeated_event_id_within_a_batch_is_stored_once(store):
    first = beat(status="ok")
    again = NewEvent(first.event, event_id=first.event_id)
    other = beat(status="warning")

    result = store.append([first, again, other])

    assert [r.event_id for r in result.recorded] == [first.event_id, other.event_id]
    assert result.duplicates == [first.event_id]
    assert [r.version for r in store.read_stream("web01/service")] == [1, 2]


def test_a_retried_batch_is_reported_as_duplicates_and_not_stored_twice(store, engine):
    batch = [beat("a"), beat("b"), beat("a")]
    store.append(batch, expected_version={"a/service": 0})

    retry = store.append(batch, expected_version={"a/service": 0})  # the same request again

    assert retry.recorded == []
    assert retry.duplicates == [n.event_id for n in batch]
    assert retry.last_position is None
    alone = store.append([batch[2]])  # one event on its own takes a shorter path on PostgreSQL
    assert (alone.recorded, alone.duplicates) == ([], [batch[2].event_id])
    assert count_rows(engine) == 3

    # A batch mixing known and new ids stores the new ones with contiguous versions.
    mixed = store.append([batch[0], beat("a"), batch[1], beat("b")])
    assert mixed.duplicates == [batch[0].event_id, batch[1].event_id]
    assert [(r.stream, r.version) for r in mixed.recorded] == [("a/service", 3), ("b/service", 2)]

    # The same with a batch large enough for PostgreSQL's COPY path.
    large = [beat("a") for _ in range(40)]
    store.append(large[:10])
    result = store.append([*large, beat("b")], expected_version={"a/service": 13})
    assert result.duplicates == [n.event_id for n in large[:10]]
    assert [r.version for r in result.recorded] == [*range(14, 44), 3]
    assert [r.event_id for r in store.read_stream("a/service", 14)] == [
        n.event_id for n in large[10:]
    ]


def test_two_writers_racing_with_the_same_ids_store_them_once(database_url, clock):
    """Threads with their own engines, released together, append the same batches."""
    writers = 4
    rounds = 8
    engines = [create_engine(database_url) for _ in range(writers)]
    stores = [open_store(e, clock) for e in engines]
    # Small and large batches: PostgreSQL appends them in two ways (one statement; COPY).
    sizes = [5 if r % 2 else 40 for r in range(rounds)]
    batches = [[beat(f"srv{r}-{i % 7}") for i in range(sizes[r])] for r in range(rounds)]
    barrier = threading.Barrier(writers)
    results: list[list] = [[] for _ in range(writers)]
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            for batch in batches:
                barrier.wait(timeout=30)
                results[k].append(stores[k].append(batch))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=write, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log = stores[0].read_all(limit=None)
    for e in engines:
        e.dispose()

    assert errors == []
    assert len(log) == sum(sizes)
    assert len({r.event_id for r in log}) == sum(sizes)
    for r, batch in enumerate(batches):
        ids = [n.event_id for n in batch]
        recorded = [ev.event_id for k in range(writers) for ev in results[k][r].recorded]
        duplicates = [i for k in range(writers) for i in results[k][r].duplicates]
        # Every id was recorded by exactly one writer; the others were told it was a duplicate.
        assert sorted(recorded) == sorted(ids)
        assert sorted(duplicates) == sorted(ids * (writers - 1))


# --- upcasting ----------------------------------------------------------------------------------


def test_a_stored_v1_heartbeat_is_read_as_v2(store, engine, clock):
    """A row written by a 2025 agent (schema 1: "Service", key_fingerprint) is read as v2."""
    v1 = {
        "server": "web01",
        "component": "Service",
        "sent_at": "2026-11-27T09:59:58+00:00",
        "status": "ok",
        "key_fingerprint": "cd" * 32,
    }
    with write_connection(engine) as conn, conn.begin():
        conn.execute(
            events_table.insert(),
            {
                "event_id": uuid.uuid4(),
                "stream": "web01/service",
                "version": 1,
                "type": "HeartbeatRecorded",
                "schema_version": 1,
                "data": orjson.dumps(v1).decode(),
                "metadata": "{}",
                "occurred_at": clock.now,
                "recorded_at": clock.now,
            },
        )
    expected = HeartbeatRecorded(
        server="web01",
        component="service",
        sent_at=datetime(2026, 11, 27, 9, 59, 58, tzinfo=UTC),
        encryption_key_fingerprint="cd" * 32,
    )

    for read in (
        store.read_all()[0],
        store.read_stream("web01/service")[0],
        next(store.iter_all()),
    ):
        assert read.event == expected
        assert read.schema_version == 1  # as stored
    # The stream goes on at version 2 with the current schema.
    assert store.append([beat()], expected_version=1).recorded[0].version == 2


# --- PostgreSQL only --------------------------------------------------------------------------


@pytest.mark.postgres
def test_each_append_notifies_its_last_position_once_committed(pg_database_url):
    engine = create_engine(pg_database_url)
    store = open_store(engine)
    listener = psycopg.connect(
        pg_database_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    )
    try:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")

        def heard() -> list[str]:
            return [n.payload for n in listener.notifies(timeout=0.5, stop_after=1)]

        result = store.append([beat("a"), beat("b"), beat("c")])
        assert heard() == [str(result.last_position)]
        large = store.append([beat(f"n{i}") for i in range(40)])  # the COPY path
        assert heard() == [str(large.last_position)]

        with write_connection(engine) as conn:
            with conn.begin():
                inside = store.append([beat("d")], connection=conn)
                assert heard() == []  # not before the commit: the event is not readable yet
            assert heard() == [str(inside.last_position)]
            with conn.begin() as tx:
                store.append([beat("e")], connection=conn)
                tx.rollback()
        assert heard() == []

        store.append([NewEvent(beat("a").event, event_id=result.recorded[0].event_id)])
        assert heard() == []  # only duplicates: nothing new to hear about
    finally:
        listener.close()
        engine.dispose()


@pytest.mark.postgres
def test_appends_survive_a_pooled_connection_killed_by_the_server(pg_database_url):
    engine = create_engine(pg_database_url)
    store = open_store(engine)
    admin = psycopg.connect(
        pg_database_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    )
    try:
        store.append([beat()])
        with engine.connect() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        # Every session of this database: the pool's and the store's own autocommit ones.
        admin.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )

        result = store.append([beat()])  # dead connections are replaced, not used

        assert [r.version for r in result.recorded] == [2]
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() != pid
    finally:
        admin.close()
        engine.dispose()


@pytest.mark.postgres
def test_forked_processes_append_on_connections_of_their_own(pg_database_url):
    """gunicorn forks workers from a process that may have appended already: two children
    sharing the parent's idle connection would interleave on one socket."""
    engine = create_engine(pg_database_url)
    store = open_store(engine)
    try:
        store.append([beat("parent")])  # leaves an idle connection behind
        children = []
        for name in ("left", "right"):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                code = 1
                try:
                    engine.dispose(close=False)  # as api/app.py does after a fork
                    for _ in range(50):
                        store.append([beat(name)])
                    code = 0
                finally:
                    os._exit(code)
            children.append(pid)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]

        assert codes == [0, 0]
        assert store.append([beat("parent")]).recorded[0].version == 2
        assert store.stream_version("left/service") == store.stream_version("right/service") == 50
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_database_error_surfaces_as_sqlalchemys_and_the_store_goes_on(pg_database_url):
    engine = create_engine(pg_database_url)
    store = open_store(engine)
    try:
        with pytest.raises(sa.exc.DataError, match="too long"):
            store.append([beat("a"), beat("x" * 300)])  # stream is varchar(250)
        assert store.head_position() == 0  # nothing of the batch

        assert [r.stream for r in store.append([beat("a")]).recorded] == ["a/service"]
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_current_heartbeats_are_appended_in_one_call_and_stale_ones_refused(pg_database_url):
    engine = create_engine(pg_database_url)
    store = open_store(engine, lambda: T0 + timedelta(minutes=10))
    since = T0 + timedelta(minutes=5)  # heartbeats recorded before this are stale

    def append(*beats, policy=None, dups=()):
        return append_current_heartbeats(
            store,
            beats,
            current_since=[since] * len(beats),
            policy_versions=policy or {"cluster": 0},
            maybe_duplicates=dups,
            recorded_at=T0 + timedelta(minutes=10),
        )

    listener = psycopg.connect(
        pg_database_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    )

    def heard() -> list[str]:
        return [n.payload for n in listener.notifies(timeout=0.5, stop_after=1)]

    try:
        store.append([beat("old")], recorded_at=T0)
        store.append([beat("fresh")], recorded_at=since)
        store.append([beat("gone"), NewEvent(ComponentRemoved(server="gone", component="service"))])
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")

        accepted = append(beat("fresh"), beat("new"), beat("gone"), beat("fresh"))
        assert heard() == [str(accepted.last_position)]  # followers hear of it, once committed
        assert [(r.stream, r.version) for r in accepted.recorded] == [
            ("fresh/service", 2),
            ("new/service", 1),
            ("gone/service", 3),
            ("fresh/service", 3),
        ]
        assert all(r.recorded_at == T0 + timedelta(minutes=10) for r in accepted.recorded)

        head = store.head_position()
        assert append(beat("fresh"), beat("old")) is None  # "old" must be judged first
        assert append(beat("fresh"), policy={"cluster": 1}) is None  # the policy moved on
        store.append([NewEvent(ConfigurationChanged(changes={"load_balancing": True}))])
        assert append(beat("fresh"), policy={"cluster": 0}) is None
        assert store.head_position() == head + 1  # only the configuration change
        assert heard() == [str(head + 1)]

        again = accepted.recorded[1]
        retried = append(
            beat("new", event_id=again.event_id), policy={"cluster": 1}, dups=[again.event_id]
        )
        assert retried.recorded == [] and retried.duplicates == [again.event_id]
        assert heard() == []
    finally:
        listener.close()
        engine.dispose()
