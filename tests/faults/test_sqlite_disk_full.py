"""SQLite on a full disk: the database lives on a small tmpfs that a filler file fills up while
`clustermon serve` takes heartbeats. Agents must be told to retry (never a 500), nothing
acknowledged may be lost, the file must stay sound, and ingest must resume once space is freed.
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import migrations
from tests.conftest import IN_CI
from tests.faults.conftest import Answer, Clustermon, heartbeat, post_heartbeat, wait_until

pytestmark = pytest.mark.slow

DISK_SIZE = "4m"  # the migrated database is ~100 KB: room for a few batches, then full
BATCH = 200  # heartbeats per request: each commit needs room in the WAL


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A tmpfs of DISK_SIZE mounted for the test (needs root, or CAP_SYS_ADMIN)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        message = f"cannot mount a tmpfs for the full-disk test: {mounted.stderr.strip()}"
        if IN_CI:
            pytest.fail(message + " (CI=true: the fault suite must run)")
        pytest.skip("!!! SKIPPING THE FULL-DISK TEST !!! " + message)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    """A file that takes every byte left on `directory`'s file system."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    for size in (4096, 512, 1):  # the last partial chunks too
        with filler.open("ab", buffering=0) as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * size)
    return filler


def batch() -> tuple[dict, list[str]]:
    beats = [heartbeat(f"node{i % 4}", str(uuid.uuid4())) for i in range(BATCH)]
    return {"heartbeats": beats}, [b["event_id"] for b in beats]


def test_a_full_disk_is_a_retry_later_and_loses_nothing(small_disk, processes, tmp_path):
    path = small_disk / "clustermon.db"
    url = f"sqlite:///{path}"
    migrations.upgrade(url)
    server = Clustermon(url, tmp_path)
    processes.append(server)
    token = server.cli("token", "create", "--role", "agent", "--name", "faults")
    server.serve()

    answers: list[tuple[Answer, list[str]]] = []

    def post() -> Answer:
        body, ids = batch()
        answer = post_heartbeat(server.url, token, body)
        answers.append((answer, ids))
        return answer

    assert post().status == 202
    filler = fill(small_disk)
    refused = wait_until(
        lambda: (a := post()).status != 202 and a,
        60,
        "a heartbeat refused once the disk is full",
    )
    for _ in range(5):  # more while the disk is full: none may do harm
        post()

    filler.unlink()
    wait_until(lambda: post().status == 202, 15, "ingest resumed once space is freed")
    assert post().status == 202
    server.kill()

    wrong = [str(a) for a, _ in answers if a.status != 202 and not _told_to_retry(a)]
    assert wrong == [], f"{len(wrong)} of {len(answers)} answers neither 202 nor 503/507 problem"
    assert "disk is full" in refused.json()["detail"], refused
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = {uuid.UUID(row[0]) for row in db.execute("SELECT event_id FROM events")}
    acknowledged = {uuid.UUID(i) for a, ids in answers if a.status == 202 for i in ids}
    assert acknowledged - stored == set()
    refused_ids = {uuid.UUID(i) for a, ids in answers if a.status != 202 for i in ids}
    assert refused_ids & stored == set()  # told to retry: nothing of it was written


def _told_to_retry(answer: Answer) -> bool:
    try:
        body = answer.json()
    except ValueError:
        return False
    return (
        answer.status in (503, 507)
        and answer.media_type == "application/problem+json"
        and body["status"] == answer.status
        and (answer.status == 507 or "retry-after" in answer.headers)
    )
