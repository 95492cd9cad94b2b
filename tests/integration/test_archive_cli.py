"""`clustermon archive --before --to`, `archive --verify` and `restore` through Flask's CLI
runner, on both databases: what an operator reads, and the exit status."""

from __future__ import annotations

from datetime import timedelta

import pytest

from api.services import services
from cli.main import create_app
from eventstore import retention as log_retention
from retention import manifest as manifests
from tests.integration import projection_support as ps


@pytest.fixture
def app(database_url, clock):
    app = create_app({"DATABASE_URL": database_url, "CLOCK": clock, "TESTING": True})
    yield app
    services(app).engine.dispose()


def fill(app, clock, minutes=12):
    store = services(app).store
    for i in range(minutes):
        store.append([ps.beat(store, f"srv{i % 3}")])
        clock.advance(minutes=1)
    return store


def run(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def test_archive_verify_restore(app, clock, tmp_path):
    t0 = clock()
    store = fill(app, clock)
    folder = tmp_path / "archive"
    before = (t0 + timedelta(minutes=6)).isoformat()

    done = run(app, "archive", "--before", before, "--to", str(folder))

    assert done.exit_code == 0, done.output
    assert "archived: positions 1-6 (6 events" in done.output
    assert log_retention.oldest_position(store.engine) == 7
    checked = run(app, "archive", "--verify", str(folder))
    assert checked.exit_code == 0 and "sound: positions 1-6" in checked.output
    again = run(app, "archive", "--before", before, "--to", str(folder))
    assert again.exit_code == 0 and "was already archived" in again.output

    back = run(app, "restore", str(folder))
    assert back.exit_code == 0 and "restored 6 events" in back.output
    assert log_retention.oldest_position(store.engine) == 1
    twice = run(app, "restore", str(folder))
    assert twice.exit_code == 1
    assert "nothing restored: cannot restore: positions 1, 2, 3" in twice.output


def test_a_damaged_archive_fails_verify_naming_the_file(app, clock, tmp_path):
    t0 = clock()
    fill(app, clock)
    folder = tmp_path / "archive"
    assert (
        run(
            app, "archive", "--before", (t0 + timedelta(minutes=6)).isoformat(), "--to", str(folder)
        ).exit_code
        == 0
    )
    manifest = folder / manifests.NAME
    raw = bytearray(manifest.read_bytes())
    raw[raw.index(b'"events": 6') + len('"events": ')] = ord("7")
    manifest.write_bytes(bytes(raw))

    checked = run(app, "archive", "--verify", str(folder))

    assert checked.exit_code == 1
    assert f"the archive is damaged: {manifest}: manifest.json was altered" in checked.output
    refused = run(app, "restore", str(folder))
    assert refused.exit_code == 1 and "nothing restored" in refused.output


def test_usage_errors_say_what_to_give(app, clock, tmp_path):
    fill(app, clock, minutes=2)
    assert "give --before TIME --to DIR" in run(app, "archive").output
    assert "give --before TIME" in run(app, "archive", "--to", str(tmp_path)).output
    mixed = run(app, "archive", "--verify", str(tmp_path), "--to", str(tmp_path))
    assert mixed.exit_code == 2 and "takes no --before or --to" in mixed.output
    bad = run(app, "archive", "--before", "yesterday", "--to", str(tmp_path))
    assert bad.exit_code == 2 and "is not an ISO-8601 time" in bad.output
    future = run(
        app,
        "archive",
        "--before",
        (clock() + timedelta(hours=1)).isoformat(),
        "--to",
        str(tmp_path / "f"),
    )
    assert future.exit_code == 1 and "is in the future" in future.output
    (tmp_path / "a-file").write_text("")
    a_file = run(app, "archive", "--before", clock().isoformat(), "--to", str(tmp_path / "a-file"))
    assert a_file.exit_code == 2 and "is a file" in a_file.output
    under = str(tmp_path / "a-file" / "archive")
    blocked = run(app, "archive", "--before", clock().isoformat(), "--to", under)
    assert blocked.exit_code == 1 and "nothing deleted: [Errno" in blocked.output
    nothing = run(app, "archive", "--verify", str(tmp_path))
    assert nothing.exit_code == 1 and "no manifest.json" in nothing.output
