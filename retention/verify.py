"""Reading an archive back against its manifest: what `clustermon archive --verify` runs, and
what the archiver runs before it deletes anything."""

from __future__ import annotations

import zlib
from datetime import datetime
from pathlib import Path

from retention import jsonl
from retention import manifest as manifests
from retention.manifest import FileEntry, Manifest, ManifestError


class ArchiveDamaged(ValueError):
    """An archive does not read back as its manifest says; the message names the file."""


def read_manifest(directory: Path) -> Manifest | None:
    """The directory's manifest, None if it has none (ArchiveDamaged if it is not sound)."""
    path = directory / manifests.NAME
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return manifests.loads(raw)
    except ManifestError as exc:
        raise ArchiveDamaged(f"{path}: {exc}") from None


def verify(directory: Path) -> Manifest:
    """Check the manifest, then every file: its SHA-256 and size, and that it decompresses to
    exactly the events, positions and times the manifest gives. Returns the manifest."""
    found = read_manifest(directory)
    if found is None:
        raise ArchiveDamaged(f"{directory}: no {manifests.NAME} (not an archive, or unfinished)")
    for entry in found.files:
        _verify_file(directory / entry.name, entry, found)
    return found


def _verify_file(path: Path, entry: FileEntry, found: Manifest) -> None:
    if not path.is_file():
        raise ArchiveDamaged(f"{path}: missing (listed in {manifests.NAME})")
    size = path.stat().st_size
    if size != entry.bytes:
        raise ArchiveDamaged(f"{path}: {size} bytes, the manifest says {entry.bytes}")
    digest = jsonl.sha256_of(path)
    if digest != entry.sha256:
        raise ArchiveDamaged(f"{path}: SHA-256 {digest} does not match the manifest's")
    try:
        _check_rows(path, entry, found)
    except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError) as exc:
        raise ArchiveDamaged(f"{path}: does not read back: {exc}") from None


def _check_rows(path: Path, entry: FileEntry, found: Manifest) -> None:
    count, previous_position = 0, entry.first_position - 1
    previous_time: datetime | None = None
    for row in jsonl.read_rows(path):
        position, recorded_at = row["position"], row["recorded_at"]
        if count == 0 and position != entry.first_position:
            raise ValueError(f"starts at position {position}, not {entry.first_position}")
        if not previous_position < position <= entry.last_position:
            raise ValueError(f"position {position} out of order or outside the file's range")
        if previous_time is not None and recorded_at < previous_time:
            raise ValueError(f"recorded_at goes backwards at position {position}")
        if not found.first_recorded_at <= recorded_at <= found.last_recorded_at:
            raise ValueError(f"position {position} was recorded outside the archive's period")
        count += 1
        previous_position, previous_time = position, recorded_at
    if count != entry.events:
        raise ValueError(f"{count} events, the manifest says {entry.events}")
    if previous_position != entry.last_position:
        raise ValueError(f"ends at position {previous_position}, not {entry.last_position}")
