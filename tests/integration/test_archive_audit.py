"""`clustermon audit`, `what-if` and `report` with `--archive DIR`: a period that reaches before
the retention boundary reads the archived events and the live ones together, and answers as it
did before anything was archived."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from api.services import services
from cli.main import create_app
from tests.integration import projection_support as ps


@pytest.fixture
def app(database_url, clock):
    app = create_app({"DATABASE_URL": database_url, "CLOCK": clock, "TESTING": True})
    yield app
    services(app).engine.dispose()


def run(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def outage(store, clock, server: str) -> None:
    """`server`'s service beats, goes quiet, times out and recovers ten minutes later."""
    store.append([ps.beat(store, server)])
    last = clock()
    clock.advance(minutes=6)
    store.append([ps.timed_out(store, server, "service", last + timedelta(minutes=5))])
    clock.advance(minutes=4)
    store.append([ps.beat(store, server), ps.recovered(store, server, "service", last)])
    clock.advance(minutes=1)


def test_audit_whatif_and_report_read_archives_and_the_live_log(app, clock, tmp_path):
    store = services(app).store
    t0 = clock()
    for round_ in range(4):  # outages on both sides of the boundary
        for server in ("web01", "web02"):
            store.append([ps.beat(store, server)])
        outage(store, clock, "web01" if round_ % 2 else "web02")
        for server in ("web01", "web02"):
            store.append([ps.beat(store, server)])
        clock.advance(minutes=2)
    period = ["--since", t0.isoformat(), "--until", clock().isoformat()]
    commands = [
        ["audit", "--json", *period],
        ["what-if", "--stale-timeout", "60s", "--json", *period],
        ["report", "--format", "json", *period],
    ]
    before = [run(app, *c) for c in commands]
    assert all(r.exit_code == 0 for r in before), [r.output for r in before]
    assert orjson.loads(before[0].output)["episodes"], "the log has outages to find"

    first, second = tmp_path / "one", tmp_path / "two"
    for folder, minutes in ((first, 12), (second, 30)):
        cut = (t0 + timedelta(minutes=minutes)).isoformat()
        done = run(app, "archive", "--before", cut, "--to", str(folder))
        assert done.exit_code == 0, done.output

    after = [run(app, *c, "--archive", str(first), "--archive", str(second)) for c in commands]

    assert [r.exit_code for r in after] == [0, 0, 0], [r.output for r in after]
    for was, now in zip(before, after, strict=True):
        assert orjson.loads(_json(now.output)) == orjson.loads(was.output)
    live_only = run(app, *commands[0])
    assert live_only.exit_code != 0 or live_only.output != before[0].output


def _json(output: str) -> str:
    # The runner mixes stderr into output: the progress line comes first.
    return output[output.index("{") :]


def test_a_left_out_archive_is_named(app, clock, tmp_path):
    store = services(app).store
    t0 = clock()
    for _ in range(30):
        store.append([ps.beat(store, "web01")])
        clock.advance(minutes=1)
    for folder, minutes in (("one", 10), ("two", 20)):
        cut = (t0 + timedelta(minutes=minutes)).isoformat()
        assert run(app, "archive", "--before", cut, "--to", str(tmp_path / folder)).exit_code == 0
    period = ["--since", t0.isoformat(), "--until", clock().isoformat()]

    left_out = run(app, "audit", *period, "--archive", str(tmp_path / "one"))

    assert left_out.exit_code == 1
    assert f"positions 11-20 in {tmp_path / 'two'} lies between these" in left_out.output
    # The later one alone starts from the boundary snapshot the earlier archive left.
    alone = run(app, "audit", *period, "--archive", str(tmp_path / "two"))
    assert alone.exit_code == 0, alone.output
    saving = run(app, "report", "--save", *period, "--archive", str(tmp_path / "two"))
    assert saving.exit_code == 2 and "drop --archive" in saving.output
