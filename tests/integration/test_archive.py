"""Archiving a prefix of the log to files, verifying and restoring it (retention/), on both
databases: the files hold the rows as stored, the log keeps the rest, time travel at or after
the boundary is unchanged, and a restore brings the period back."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from eventstore import retention as log_retention
from eventstore.retention import RestoreOverlap
from projections.readmodel.timetravel import view_at
from retention import jsonl
from retention import manifest as manifests
from retention.archive import ArchiveRefused, archive
from retention.restore import restore
from retention.verify import ArchiveDamaged, verify
from tests.integration import projection_support as ps


def fill(store, clock, minutes: int = 40) -> None:
    """A heartbeat a minute from five servers, a removal and a configuration change."""
    for i in range(minutes):
        store.append([ps.beat(store, f"srv{i % 5}", "service" if i % 2 else "web")])
        if i == 12:
            store.append([ps.configure(stale_timeout_seconds=120)])
        if i == 17:
            store.append([ps.remove("srv2", "web")])
        clock.advance(minutes=1)


def everything(store) -> list[dict]:
    return list(log_retention.iter_range(store.engine, 1, store.head_position()))


def test_archive_writes_the_rows_as_stored_then_deletes_them(store, clock, tmp_path):
    t0 = clock()
    fill(store, clock)
    before_rows = everything(store)
    boundary = t0 + timedelta(minutes=20, seconds=30)
    archived = [r for r in before_rows if r["recorded_at"] < boundary]

    result = archive(store, boundary, tmp_path / "a", events_per_file=7)

    found = result.manifest
    assert found is not None and not result.resumed
    assert (found.first_position, found.last_position) == (1, archived[-1]["position"])
    assert found.events == len(archived) and found.before == boundary
    assert [len(range(f.events)) for f in found.files] == [7, 7, 7, len(archived) - 21]
    in_files = [row for f in found.files for row in jsonl.read_rows(tmp_path / "a" / f.name)]
    assert in_files == archived  # positions, ids, payload text and times exactly as stored
    assert everything(store)[0]["position"] == found.last_position + 1
    assert everything(store) == before_rows[len(archived) :]
    (row,) = log_retention.archives(store.engine)
    assert row["path"] == str(tmp_path / "a") and row["events"] == len(archived)
    assert row["sha256"] == jsonl.sha256_of(tmp_path / "a" / manifests.NAME)
    assert verify(tmp_path / "a") == found
    assert "archived: positions 1-" in result.describe()


def test_time_travel_at_or_after_the_boundary_is_unchanged(store, clock, tmp_path):
    t0 = clock()
    fill(store, clock)
    boundary = t0 + timedelta(minutes=20, seconds=30)
    times = [boundary + timedelta(seconds=s) for s in (0, 29, 30, 90, 600, 1200)]
    seen = [view_at(store, at=t) for t in times]

    archive(store, boundary, tmp_path / "a")

    assert [view_at(store, at=t) for t in times] == seen


def test_restore_brings_the_period_back_and_refuses_twice(store, clock, tmp_path):
    t0 = clock()
    fill(store, clock)
    original = everything(store)
    early = t0 + timedelta(minutes=5)
    seen_early = view_at(store, at=early)
    archive(store, t0 + timedelta(minutes=20), tmp_path / "a")
    assert everything(store) != original

    found, restored = restore(store, tmp_path / "a")

    assert restored == found.events
    assert everything(store) == original
    assert log_retention.archives(store.engine) == []
    assert view_at(store, at=early) == seen_early
    with pytest.raises(RestoreOverlap, match="already in the log"):
        restore(store, tmp_path / "a")
    assert everything(store) == original


def test_a_rerun_finishes_nothing_twice_and_a_used_directory_is_refused(store, clock, tmp_path):
    t0 = clock()
    fill(store, clock)
    first = archive(store, t0 + timedelta(minutes=10), tmp_path / "a")
    kept = everything(store)

    again = archive(store, t0 + timedelta(minutes=10), tmp_path / "a")

    assert again.already_done and again.manifest == first.manifest
    assert everything(store) == kept
    with pytest.raises(ArchiveRefused, match="already holds a completed archive"):
        archive(store, t0 + timedelta(minutes=20), tmp_path / "a")
    nxt = archive(store, t0 + timedelta(minutes=20), tmp_path / "b")
    assert nxt.manifest is not None and first.manifest is not None
    assert nxt.manifest.first_position == first.manifest.last_position + 1


def test_nothing_before_the_log_and_no_future(store, clock, tmp_path):
    t0 = clock()
    fill(store, clock, minutes=3)
    result = archive(store, t0, tmp_path / "none")
    assert result.manifest is None and not (tmp_path / "none").exists()
    assert "nothing to archive" in result.describe()
    with pytest.raises(ArchiveRefused, match="in the future"):
        archive(store, clock() + timedelta(seconds=1), tmp_path / "x")


def test_an_interrupted_run_is_resumed_or_rewritten(store, clock, tmp_path, monkeypatch):
    """A run stopped after its manifest (here: the delete fails once) is resumed from the files;
    one whose range no longer matches is rewritten, stray temporary files and all."""
    t0 = clock()
    fill(store, clock)
    original = everything(store)
    folder = tmp_path / "a"

    def crash(*_args, **_kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(log_retention, "delete_range", crash)
        with pytest.raises(KeyboardInterrupt):
            archive(store, t0 + timedelta(minutes=10), folder, events_per_file=4)
    assert everything(store) == original  # nothing deleted
    (folder / "events-part-00009.tmp").write_bytes(b"half a file")
    resumed = archive(store, t0 + timedelta(minutes=10), folder, events_per_file=4)
    assert resumed.resumed
    assert everything(store) == [
        r for r in original if r["recorded_at"] >= t0 + timedelta(minutes=10)
    ]

    restore(store, folder)
    with monkeypatch.context() as patch:
        patch.setattr(log_retention, "delete_range", crash)
        with pytest.raises(KeyboardInterrupt):
            archive(store, t0 + timedelta(minutes=10), folder)
    rewritten = archive(store, t0 + timedelta(minutes=25), folder, events_per_file=4)
    assert not rewritten.resumed and rewritten.manifest is not None
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([manifests.NAME, *(f.name for f in rewritten.manifest.files)])
    assert verify(folder) == rewritten.manifest


def test_verify_names_the_damaged_file(store, clock, tmp_path):
    t0 = clock()
    fill(store, clock)
    found = archive(store, t0 + timedelta(minutes=20), tmp_path / "a", events_per_file=5).manifest
    assert found is not None
    second = tmp_path / "a" / found.files[1].name
    data = bytearray(second.read_bytes())
    data[len(data) // 2] ^= 0xFF
    second.write_bytes(bytes(data))
    with pytest.raises(ArchiveDamaged, match=found.files[1].name + ": SHA-256"):
        verify(tmp_path / "a")
    with pytest.raises(ArchiveDamaged):
        restore(store, tmp_path / "a")
    second.unlink()
    with pytest.raises(ArchiveDamaged, match="missing"):
        verify(tmp_path / "a")
    with pytest.raises(ArchiveDamaged, match=r"no manifest\.json"):
        verify(tmp_path)


def test_the_manifest_describes_the_archive(store, clock, tmp_path):
    t0 = clock()
    fill(store, clock, minutes=10)
    archive(store, t0 + timedelta(minutes=5), tmp_path / "a")
    body = orjson.loads((tmp_path / "a" / manifests.NAME).read_bytes())
    assert body["format"] == "clustermon-archive" and body["format_version"] == 1
    assert body["first_position"] == 1 and body["events"] == 5
    assert body["first_recorded_at"] == t0.isoformat()
    assert body["last_recorded_at"] == (t0 + timedelta(minutes=4)).isoformat()
    assert [f["events"] for f in body["files"]] == [5]


def test_a_damaged_unfinished_run_is_rewritten_and_a_stale_copy_refused(
    store, clock, tmp_path, monkeypatch
):
    t0 = clock()
    fill(store, clock)
    original = everything(store)
    boundary = t0 + timedelta(minutes=10)

    def crash(*_args, **_kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(log_retention, "delete_range", crash)
        for folder in ("a", "b"):
            with pytest.raises(KeyboardInterrupt):
                archive(store, boundary, tmp_path / folder, events_per_file=4)
            clock.advance(seconds=1)  # (a copy made at the same moment is the same bytes)
    damaged = sorted((tmp_path / "a").glob("events-*"))[0]
    damaged.write_bytes(damaged.read_bytes()[:-3])  # a torn file the manifest still names

    redone = archive(store, boundary, tmp_path / "a", events_per_file=4)

    assert not redone.resumed and verify(tmp_path / "a") == redone.manifest
    kept = [r for r in original if r["recorded_at"] >= boundary]
    assert everything(store) == kept
    with pytest.raises(ArchiveRefused, match=r"were archived since to .*/a; remove"):
        archive(store, boundary, tmp_path / "b")
    assert everything(store) == kept
