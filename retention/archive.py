"""The archive run: every event recorded before a time goes to files, then leaves the log.

Steps, each safe to interrupt (a rerun with the same directory finishes the job, and no event
is lost or stored twice):
1. the range: the positions of the events recorded before `before` (the store's
   `archivable_range`); nothing to do when there are none;
2. the files, `events_per_file` events each, each written under a temporary name, fsync'd and
   renamed (retention/jsonl.py); a crash here leaves no manifest, and the rerun rewrites them;
3. `manifest.json`, written last the same way: its presence means the files are complete;
4. the archive read back against the manifest (retention/verify.py): nothing is deleted on
   the strength of files that do not read back;
5. a snapshot of the state after the last archived event (projections/readmodel/boundary.py),
   so time travel at or after the boundary never needs the deleted events;
6. the delete, one transaction in the store that checks the range still holds exactly the
   events written and records the archive (`delete_range`; RangeChanged otherwise).

A directory whose manifest names events still in the log (an unfinished run) is resumed at
step 4 when the range is the same, or rewritten when it is not (its files are only copies).
A directory whose archive was completed is never overwritten.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eventstore import retention as log_retention
from eventstore.store import EventStore
from projections.readmodel.boundary import snapshot_boundary
from retention import jsonl
from retention import manifest as manifests
from retention.durable import TEMPORARY_SUFFIX, fsync_directory, write_durably
from retention.manifest import FileEntry, Manifest
from retention.pause import (
    AFTER_FILES,
    AFTER_SNAPSHOT,
    BEFORE_MANIFEST_RENAME,
    IN_DELETE,
    pause_point,
    pausing_before_commit,
)
from retention.verify import ArchiveDamaged, read_manifest, verify

EVENTS_PER_FILE = 1_000_000


class ArchiveRefused(Exception):
    """The archive cannot be made as asked; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    directory: Path
    manifest: Manifest | None  # None: nothing was recorded before `before`
    resumed: bool = False  # an unfinished run's files were used
    already_done: bool = False  # this directory's archive had been completed before

    def describe(self) -> str:
        if self.manifest is None:
            return "nothing to archive: no event in the log was recorded before that time"
        m = self.manifest
        done = "was already archived" if self.already_done else "archived"
        size = sum(entry.bytes for entry in m.files)
        return (
            f"{done}: {m.describe()} to {self.directory} ({len(m.files)} file(s),"
            f" {size:,} bytes){'; resumed an unfinished run' if self.resumed else ''};"
            f" the log now starts after position {m.last_position}"
        )


def archive(
    store: EventStore,
    before: datetime,
    directory: Path,
    *,
    events_per_file: int = EVENTS_PER_FILE,
    progress: Callable[[int], None] | None = None,
) -> ArchiveResult:
    """Archive every event recorded before `before` into `directory` and delete it from the
    log (see the module's docstring for the steps). Raises ArchiveRefused."""
    engine = store.engine
    before = (before if before.tzinfo else before.replace(tzinfo=UTC)).astimezone(UTC)
    now = store.clock()
    if before > now:
        raise ArchiveRefused(
            f"{before.isoformat()} is in the future (now is {now.isoformat()}):"
            " events could still be recorded before it"
        )
    directory = directory.absolute()
    wanted = log_retention.archivable_range(engine, before)
    existing = read_manifest(directory)
    resumed = False
    if existing is not None:
        if _completed(engine, existing, directory):
            if wanted is None:  # a rerun after the delete committed: nothing left to do
                return ArchiveResult(directory, existing, already_done=True)
            raise ArchiveRefused(
                f"{directory} already holds a completed archive ({existing.describe()});"
                " write the next archive to another directory"
            )
        resumed = wanted is not None and existing.same_range(*wanted) and _sound(directory)
    if wanted is None:
        return ArchiveResult(directory, None)
    first, last, count = wanted
    directory.mkdir(parents=True, exist_ok=True)
    if resumed:
        assert existing is not None
        written = existing
    else:
        _clear(directory)
        written = _write(store, directory, wanted, before, now, events_per_file, progress)
        verify(directory)  # what is about to be deleted reads back from the files
    snapshot_boundary(store, last)
    pause_point(AFTER_SNAPSHOT)
    row = {
        "first_position": first,
        "last_position": last,
        "before": written.before,
        "events": count,
        "path": str(directory),
        "sha256": jsonl.sha256_of(directory / manifests.NAME),
        "archived_at": store.clock(),
    }
    with pausing_before_commit(engine, IN_DELETE):
        log_retention.delete_range(engine, first, last, count, archive_row=row)
    return ArchiveResult(directory, written, resumed=resumed)


def _write(
    store: EventStore,
    directory: Path,
    wanted: tuple[int, int, int],
    before: datetime,
    now: datetime,
    events_per_file: int,
    progress: Callable[[int], None] | None,
) -> Manifest:
    """The files, then the manifest naming them."""
    first, last, count = wanted
    entries = _write_files(store, directory, first, last, events_per_file, progress)
    pause_point(AFTER_FILES)
    events = sum(entry.events for entry, _ in entries)
    if not entries or events != count:
        raise ArchiveRefused(
            f"the log changed while it was written: {count} events expected between"
            f" positions {first} and {last}, {events} read; run it again"
        )
    written = Manifest(
        first_position=first,
        last_position=last,
        events=count,
        first_recorded_at=entries[0][1].first_recorded_at,
        last_recorded_at=entries[-1][1].last_recorded_at,
        before=before,
        created_at=now,
        files=tuple(entry for entry, _ in entries),
    )
    raw = manifests.dumps(written)
    write_durably(
        directory / manifests.NAME,
        lambda file: file.write(raw),
        before_rename=lambda: pause_point(BEFORE_MANIFEST_RENAME),
    )
    return written


def _sound(directory: Path) -> bool:
    """Whether an unfinished run's archive reads back whole (else it is written again)."""
    try:
        verify(directory)
    except ArchiveDamaged:
        return False
    return True


def _completed(engine, existing: Manifest, directory: Path) -> bool:
    """Whether the archive in `directory` was completed (its events deleted from the log):
    the database recorded this range with this very manifest."""
    manifest_sha256 = jsonl.sha256_of(directory / manifests.NAME)
    for row in log_retention.archives(engine):
        same_range = (row["first_position"], row["last_position"]) == (
            existing.first_position,
            existing.last_position,
        )
        if same_range and row["sha256"] == manifest_sha256:
            return True
        if (
            row["first_position"] <= existing.last_position
            and existing.first_position <= row["last_position"]
        ):
            raise ArchiveRefused(
                f"{directory} holds an unfinished archive of {existing.describe()}, whose"
                f" events were archived since to {row['path']}; remove {directory} or choose"
                " another directory"
            )
    return False


def _clear(directory: Path) -> None:
    """Remove an unfinished run's manifest (first: it must never name missing files), files
    and temporary files; anything else in the directory is left alone."""
    manifest = directory / manifests.NAME
    if manifest.exists():
        manifest.unlink()
        fsync_directory(directory)
    for path in directory.iterdir():
        ours = path.name.startswith("events-") and (
            path.name.endswith(jsonl.SUFFIX) or path.name.endswith(TEMPORARY_SUFFIX)
        )
        if ours or path.name == manifests.NAME + TEMPORARY_SUFFIX:
            path.unlink()
    fsync_directory(directory)


def _write_files(
    store: EventStore,
    directory: Path,
    first: int,
    last: int,
    events_per_file: int,
    progress: Callable[[int], None] | None,
) -> list[tuple[FileEntry, jsonl.Written]]:
    rows = iter(log_retention.iter_range(store.engine, first, last))
    entries = []
    for index in itertools.count():
        head = next(rows, None)
        if head is None:
            break
        chunk = itertools.chain([head], itertools.islice(rows, events_per_file - 1))
        entries.append(_write_file(directory, index, _counted(chunk, progress)))
    fsync_directory(directory)  # the renames, before a manifest names them
    return entries


def _counted(
    rows: Iterable[Mapping[str, Any]], progress: Callable[[int], None] | None
) -> Iterable[Mapping[str, Any]]:
    if progress is None:
        yield from rows
        return
    count = 0
    for count, row in enumerate(rows, 1):
        yield row
        if count % 10_000 == 0:
            progress(10_000)
    progress(count % 10_000)


def _write_file(
    directory: Path, index: int, rows: Iterable[Mapping[str, Any]]
) -> tuple[FileEntry, jsonl.Written]:
    """One file under a temporary name, fsync'd, then renamed after the positions it holds."""
    temporary = directory / f"events-part-{index:05d}{TEMPORARY_SUFFIX}"
    with temporary.open("wb") as file:
        written = jsonl.write_rows(file, rows)
        file.flush()
        os.fsync(file.fileno())
    name = jsonl.file_name(written.first_position, written.last_position)
    os.replace(temporary, directory / name)
    entry = FileEntry(
        name=name,
        sha256=written.sha256,
        bytes=written.bytes,
        events=written.events,
        first_position=written.first_position,
        last_position=written.last_position,
    )
    return entry, written
