"""An archive back into the log: verified first, then its rows inserted with their original
positions in one transaction of the store (`restore_rows`), which refuses a position or an
event id already in the log (RestoreOverlap) and forgets the archive's record, so time travel
into that period works again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from eventstore import retention as log_retention
from eventstore.store import EventStore
from retention import jsonl
from retention.manifest import Manifest
from retention.verify import verify


def restore(store: EventStore, directory: Path) -> tuple[Manifest, int]:
    """(the archive's manifest, events restored). Raises ArchiveDamaged before writing
    anything if the archive does not verify, RestoreOverlap if it overlaps the log."""
    directory = directory.absolute()
    found = verify(directory)
    restored = log_retention.restore_rows(store.engine, _rows(directory, found))
    return found, restored


def _rows(directory: Path, found: Manifest) -> Iterator[dict[str, Any]]:
    for entry in found.files:
        yield from jsonl.read_rows(directory / entry.name)
