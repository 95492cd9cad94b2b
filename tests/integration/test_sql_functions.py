"""PostgreSQL's server-side functions: one current source, frozen copies in the migrations.

`eventstore/sql/<function>.sql` is the current definition of each function; every revision
that creates or changes one runs its own copy, `migrations/versions/sql/<revision>_<function>.sql`
(migrations/__init__.py). These tests fail when the head's functions are not the files' (a file
edited without a migration, or a migration without the file), when a downgrade does not put back
the previous revision's definition, and when 0008's `clustermon_append_heartbeats` answers a
group differently from 0007's, which it replaced as a pure speed-up.

Each test uses databases of its own, never the session's shared one.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import migrations
from eventstore import create_engine
from tests.conftest import _libpq, scratch_database

ROOT = Path(__file__).resolve().parents[2]
CURRENT = ROOT / "eventstore" / "sql"
FROZEN = ROOT / "migrations" / "versions" / "sql"


@pytest.fixture
def new_database(postgres_url) -> Iterator[Callable[[], str]]:
    """Makes empty databases for one test (postgres_url: skips, or fails under CI, like every
    PostgreSQL test)."""
    with contextlib.ExitStack() as stack:
        yield lambda: stack.enter_context(scratch_database("clustermon_sqlfn"))


def functions(url: str) -> dict[str, str]:
    """signature -> pg_get_functiondef of each clustermon_* function in the public schema."""
    with psycopg.connect(_libpq(url)) as conn:
        rows = conn.execute(
            "SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid) FROM pg_proc p"
            " WHERE p.pronamespace = 'public'::regnamespace"
            " AND starts_with(p.proname, 'clustermon_') ORDER BY 1"
        ).fetchall()
    return dict(rows)


def name_of(signature: str) -> str:
    return signature.split("(", 1)[0]


def differences(expected: dict[str, str], actual: dict[str, str]) -> str:
    lines = []
    for signature in sorted(expected.keys() | actual.keys()):
        a, b = expected.get(signature, ""), actual.get(signature, "")
        if a != b:
            lines += difflib.unified_diff(
                a.splitlines(), b.splitlines(), signature, signature, lineterm=""
            )
    return "\n".join(lines)


def revisions() -> list[str]:
    script = ScriptDirectory.from_config(migrations.alembic_config("sqlite://"))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


@pytest.mark.postgres
def test_the_heads_functions_are_the_files_in_eventstore_sql(new_database):
    head, files = new_database(), new_database()
    migrations.upgrade(head)
    engine = create_engine(files)
    try:
        for path in sorted(CURRENT.glob("*.sql")):
            before = functions(files)
            with engine.begin() as conn:  # as a migration's op.execute runs it
                conn.execute(sa.text(path.read_text(encoding="utf-8")))
            created = {name_of(s) for s in functions(files).keys() - before.keys()}
            assert created == {path.stem}, f"{path.name} creates {created or 'nothing'}"
    finally:
        engine.dispose()

    at_head, from_files = functions(head), functions(files)
    assert {name_of(s) for s in at_head} == {name_of(s) for s in from_files}, (
        "every clustermon_* function at the head has a file in eventstore/sql/, and every file"
        " a function at the head"
    )
    assert at_head == from_files, (
        "the head's functions (left) are not eventstore/sql/'s (right): a changed file needs a"
        " migration that runs a copy of it (migrations/__init__.py)\n"
        + differences(at_head, from_files)
    )


@pytest.mark.postgres
def test_each_downgrade_puts_back_the_previous_revisions_functions(new_database):
    url = new_database()
    chain = revisions()
    seen = {}
    for revision in chain:
        migrations.upgrade(url, revision)
        seen[revision] = functions(url)
    for revision in reversed(chain[:-1]):
        migrations.downgrade(url, revision)
        assert functions(url) == seen[revision], differences(seen[revision], functions(url))
    migrations.downgrade(url, "base")
    assert functions(url) == {}


def test_frozen_copies_are_named_after_their_revision_and_function():
    known = set(revisions())
    current = {path.stem for path in CURRENT.glob("*.sql")}
    latest = {}
    for path in FROZEN.glob("*.sql"):
        match = re.fullmatch(r"(\w+?)_(clustermon_\w+)", path.stem)
        assert match and match[1] in known, f"{path.name}: not <revision>_<function>.sql"
        assert match[2] in current, f"{path.name}: no eventstore/sql/{match[2]}.sql"
        latest[match[2]] = max(latest.get(match[2], ""), match[1])
    assert latest.keys() == current


# 0008 against 0007: the same group, on the same events, through each function in turn (a
# savepoint rolled back between them, the position sequence set alike), must return the same
# rows and leave the same events table. Only groups the store builds: each component's rows with
# well-formed times, every stored id among `maybe_duplicates`, ids unique within a group.

COMPONENTS = ("srv-1/web", "srv-1/service", "srv-2/web")
UNSEEN = "srv-3/web"  # no event yet
POLICY = ("cluster", "monitor")
TYPES = ("HeartbeatRecorded", "ComponentTimedOut", "ComponentRecovered")
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
OLD = "clustermon_append_heartbeats_0007"
CALL = (
    "SELECT kind, event_id, stream, position, version, recorded_at FROM {}("
    "true, 42, 'clustermon_test', 'HeartbeatRecorded', 1::int2, %s::jsonb, %s, %s::uuid[],"
    " %s::text[], %s::int4[])"
)
EVENTS = (
    "SELECT position, event_id, stream, version, type, schema_version, data, metadata,"
    " occurred_at, recorded_at FROM events ORDER BY position"
)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@st.composite
def cases(draw):
    kinds = draw(st.lists(st.tuples(st.sampled_from(COMPONENTS + POLICY), st.sampled_from(TYPES))))
    times = sorted(draw(st.lists(st.integers(0, 6), min_size=len(kinds), max_size=len(kinds))))
    history, versions = [], {}
    for n, ((stream, type_), minutes) in enumerate(zip(kinds, times, strict=True), start=1):
        versions[stream] = versions.get(stream, 0) + 1
        history.append((n, uuid.UUID(int=n), stream, versions[stream], type_, at(minutes)))

    # current_since lands on, just before or just after a stored event's recorded_at
    near = st.sampled_from(sorted({0, *times})).flatmap(
        lambda m: st.sampled_from((m - 1, m, m, m + 1)).map(at)
    )
    stored = [event[1] for event in history]
    again = draw(st.lists(st.sampled_from(stored), unique=True, max_size=3)) if stored else []
    fresh = [uuid.UUID(int=1000 + j) for j in range(draw(st.integers(0 if again else 1, 6)))]
    rows = []
    for j, event_id in enumerate(draw(st.permutations(again + fresh))):
        occurred = draw(st.none() | st.integers(0, 8).map(at))
        since = draw(st.none() | near)
        rows.append(
            [
                str(event_id),
                draw(st.sampled_from((*COMPONENTS, UNSEEN))),
                orjson.dumps({"n": j}).decode(),
                '{"actor": "agent"}',
                occurred and occurred.isoformat(),
                since and since.isoformat(),
            ]
        )
    maybe = set(again) | set(draw(st.lists(st.sampled_from(fresh), max_size=2)) if fresh else [])
    if stored and draw(st.booleans()):
        maybe.add(draw(st.sampled_from(stored)))  # an id stored but not in the group
    policy = draw(st.lists(st.sampled_from(POLICY), unique=True))
    moved = st.sampled_from((0, 0, 0, 0, 0, 1, -1))  # mostly the versions the client judged by
    expected = [versions.get(s, 0) + draw(moved) for s in policy]
    recorded = at(draw(st.integers(0, 8)))
    params = (orjson.dumps(rows).decode(), recorded, sorted(maybe), policy, expected)
    return history, params


def answer(conn: psycopg.Connection, function: str, params: tuple) -> tuple:
    """What `function` returns for the group and the events table it leaves, then undone."""
    conn.execute("SAVEPOINT variant")
    try:
        conn.execute("SELECT setval(pg_get_serial_sequence('events', 'position'), 100, false)")
        try:
            rows = conn.execute(CALL.format(function), params).fetchall()
        except psycopg.Error as exc:
            return ("error", exc.sqlstate)
        return ("rows", sorted(rows, key=repr), conn.execute(EVENTS).fetchall())
    finally:
        conn.execute("ROLLBACK TO SAVEPOINT variant")


@pytest.fixture(scope="module")
def both_functions(postgres_url) -> Iterator[psycopg.Connection]:
    """A database at the head with 0007's function beside today's, under another name."""
    with scratch_database("clustermon_sqlfn") as url:
        migrations.upgrade(url)
        old = migrations.function_sql("0007", "clustermon_append_heartbeats")
        with psycopg.connect(_libpq(url)) as conn:
            conn.execute(old.replace("clustermon_append_heartbeats(", f"{OLD}(", 1))
            conn.commit()
            yield conn


@pytest.mark.postgres
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_0008s_append_heartbeats_answers_as_0007s(both_functions, case):
    conn, (history, params) = both_functions, case
    try:
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO events (position, event_id, stream, version, type, schema_version,"
                " data, metadata, occurred_at, recorded_at)"
                " VALUES (%s, %s, %s, %s, %s, 1, '{}', '{}', %s, %s)",
                [(*event, event[-1]) for event in history],
            )
        old = answer(conn, OLD, params)
        new = answer(conn, "clustermon_append_heartbeats", params)
        assert new == old
        event(old[1] if old[0] == "error" else "/".join(sorted({r[0] for r in old[1]})) or "none")
    finally:
        conn.rollback()
