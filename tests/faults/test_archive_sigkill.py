"""The archiver (`clustermon archive`, a real process) SIGKILLed at each step: after the files,
before the manifest is complete, after the boundary snapshot, and in the middle of the delete
(its statements run, its transaction not committed). Rerun, it finishes the job: every event
is either in the log or in the archive, exactly once, and the archive restores the log as it
was. `--verify` catches a changed byte in any file of an archive, the manifest included.

The archiver stops at a step when CLUSTERMON_TEST_PAUSE_AT names it (retention/pause.py): it
prints a line and sleeps, and the test kills it once it has read the line."""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventstore import retention as log_retention
from retention import jsonl
from retention import manifest as manifests
from retention.pause import AFTER_FILES, AFTER_SNAPSHOT, BEFORE_MANIFEST_RENAME, IN_DELETE
from tests.faults.conftest import CLUSTERMON, wait_until
from tests.integration import projection_support as ps

pytestmark = pytest.mark.slow


def fill(store, clock, minutes: int = 30) -> datetime:
    """A heartbeat a minute from four servers, a day ago; returns the boundary to archive at."""
    clock.now = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    t0 = clock()
    for i in range(minutes):
        store.append([ps.beat(store, f"srv{i % 4}", "service" if i % 3 else "web")])
        clock.advance(minutes=1)
    return t0 + timedelta(minutes=minutes // 2)


def everything(engine) -> list[dict]:
    head = max(log_retention.oldest_position(engine) or 0, 1)
    rows = list(log_retention.iter_range(engine, 1, 10**12))
    assert not rows or rows[0]["position"] >= head
    return rows


def archived_rows(folder: Path) -> list[dict]:
    found = manifests.loads((folder / manifests.NAME).read_bytes())
    return [row for f in found.files for row in jsonl.read_rows(folder / f.name)]


def environment(database_url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "CLUSTERMON_DATABASE_URL": database_url, **extra}


def clustermon(database_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLUSTERMON, *args],
        env=environment(database_url),
        capture_output=True,
        text=True,
        timeout=120,
    )


def archive_args(before: datetime, folder: Path) -> list[str]:
    return [
        "archive",
        "--before",
        before.isoformat(),
        "--to",
        str(folder),
        "--events-per-file",
        "4",
    ]


def kill_at(step: str, database_url: str, before: datetime, folder: Path, log: Path) -> None:
    """Run the archiver until it reports `step`, then SIGKILL it."""
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [*CLUSTERMON, *archive_args(before, folder)],
            env=environment(database_url, CLUSTERMON_TEST_PAUSE_AT=step),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: f"paused at {step}" in log.read_text() or process.poll() is not None,
            60,
            f"the archiver reaching {step}",
        )
        assert process.poll() is None, f"the archiver exited:\n{log.read_text()}"
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.mark.parametrize("step", [AFTER_FILES, BEFORE_MANIFEST_RENAME, AFTER_SNAPSHOT, IN_DELETE])
def test_a_killed_archiver_is_finished_by_a_rerun(
    database_url, engine, store, clock, tmp_path, step
):
    before = fill(store, clock)
    original = everything(engine)
    folder = tmp_path / "archive"

    kill_at(step, database_url, before, folder, tmp_path / "archiver.stderr")

    assert everything(engine) == original  # killed before its delete committed: nothing gone
    assert log_retention.archives(engine) == []
    assert (folder / manifests.NAME).exists() == (step in (AFTER_SNAPSHOT, IN_DELETE))

    rerun = clustermon(database_url, *archive_args(before, folder))

    assert rerun.returncode == 0, rerun.stderr
    resumed = step in (AFTER_SNAPSHOT, IN_DELETE)
    assert ("resumed an unfinished run" in rerun.stdout) == resumed, rerun.stdout
    kept, archived = everything(engine), archived_rows(folder)
    assert archived == [r for r in original if r["recorded_at"] < before]
    assert archived + kept == original  # each event once: in the archive or in the log
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [
            manifests.NAME,
            *(jsonl.file_name(r[0]["position"], r[-1]["position"]) for r in _fours(archived)),
        ]
    )
    assert clustermon(database_url, "archive", "--verify", str(folder)).returncode == 0
    back = clustermon(database_url, "restore", str(folder))
    assert back.returncode == 0, back.stderr
    assert everything(engine) == original


def _fours(rows: list[dict]) -> list[list[dict]]:
    return [rows[i : i + 4] for i in range(0, len(rows), 4)]


def test_verify_catches_a_changed_byte_in_any_file(database_url, engine, store, clock, tmp_path):
    before = fill(store, clock, minutes=12)
    folder = tmp_path / "archive"
    assert clustermon(database_url, *archive_args(before, folder)).returncode == 0
    files = sorted(folder.iterdir())
    assert len(files) == 3  # two data files and the manifest

    for path in files:
        good = path.read_bytes()
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0x01
        path.write_bytes(bytes(bad))
        try:
            checked = clustermon(database_url, "archive", "--verify", str(folder))
        finally:
            path.write_bytes(good)
        assert checked.returncode == 1, checked.stdout
        assert f"the archive is damaged: {path}:" in checked.stderr
    assert clustermon(database_url, "archive", "--verify", str(folder)).returncode == 0
