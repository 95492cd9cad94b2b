"""`manifest.json`: what an archive holds, written last (its presence means the files are
complete), and tamper-evident on its own.

Fields: `format` ("clustermon-archive") and `format_version`; `first_position`,
`last_position`, `events` (positions may have holes: a rolled-back append leaves one);
`first_recorded_at`, `last_recorded_at` (the time range); `before` (the boundary asked for:
every event recorded before it); `created_at`; `files`: per file its `name`, `sha256`,
`bytes`, `events`, `first_position`, `last_position`; and `checksum`, the SHA-256 of the
canonical JSON of every other field. The file is that canonical form itself (sorted keys,
two-space indent), so a changed byte anywhere in it is caught: by the JSON parser, by the
checksum, or by the bytes no longer being canonical.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import orjson

NAME = "manifest.json"
FORMAT = "clustermon-archive"
FORMAT_VERSION = 1
_FILE_NAME = re.compile(r"events-\d{12}-\d{12}\.jsonl\.gz")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ManifestError(ValueError):
    """The manifest is missing, malformed or altered (the message says which and how)."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    name: str
    sha256: str
    bytes: int
    events: int
    first_position: int
    last_position: int


@dataclass(frozen=True, slots=True)
class Manifest:
    first_position: int
    last_position: int
    events: int
    first_recorded_at: datetime
    last_recorded_at: datetime
    before: datetime
    created_at: datetime
    files: tuple[FileEntry, ...]

    def same_range(self, first: int, last: int, events: int) -> bool:
        return (self.first_position, self.last_position, self.events) == (first, last, events)

    def describe(self) -> str:
        return (
            f"positions {self.first_position}-{self.last_position} ({self.events:,} events"
            f" recorded {self.first_recorded_at.isoformat()} to"
            f" {self.last_recorded_at.isoformat()})"
        )


def _body(manifest: Manifest) -> dict[str, Any]:
    body = asdict(manifest)
    for name in ("first_recorded_at", "last_recorded_at", "before", "created_at"):
        body[name] = body[name].isoformat()
    body["files"] = [dict(entry) for entry in body["files"]]
    body["format"] = FORMAT
    body["format_version"] = FORMAT_VERSION
    return body


def _canonical(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"


def _checksum(body: dict[str, Any]) -> str:
    unsigned = {k: v for k, v in body.items() if k != "checksum"}
    return hashlib.sha256(_canonical(unsigned)).hexdigest()


def dumps(manifest: Manifest) -> bytes:
    body = _body(manifest)
    body["checksum"] = _checksum(body)
    return _canonical(body)


def loads(raw: bytes) -> Manifest:
    """Parse and check a manifest's bytes (ManifestError saying what is wrong)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"{NAME} is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ManifestError(f"{NAME} is not a JSON object")
    if body.get("format") != FORMAT:
        raise ManifestError(f"{NAME} is not a clustermon archive manifest (format)")
    if body.get("format_version") != FORMAT_VERSION:
        raise ManifestError(
            f"{NAME} has format_version {body.get('format_version')!r};"
            f" this clustermon reads version {FORMAT_VERSION}"
        )
    if body.get("checksum") != _checksum(body):
        raise ManifestError(f"{NAME} was altered: its checksum does not match its content")
    try:
        manifest = _parse(body)
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"{NAME} is malformed: {exc!r}") from None
    if dumps(manifest) != raw:
        raise ManifestError(f"{NAME} was altered: it is not byte for byte as written")
    _check_consistent(manifest)
    return manifest


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"{name} is not a non-negative integer")
    return value


def _parse(body: dict[str, Any]) -> Manifest:
    files = tuple(
        FileEntry(
            name=str(entry["name"]),
            sha256=str(entry["sha256"]),
            bytes=_int(entry["bytes"], "bytes"),
            events=_int(entry["events"], "events"),
            first_position=_int(entry["first_position"], "first_position"),
            last_position=_int(entry["last_position"], "last_position"),
        )
        for entry in body["files"]
    )
    time = datetime.fromisoformat
    return Manifest(
        first_position=_int(body["first_position"], "first_position"),
        last_position=_int(body["last_position"], "last_position"),
        events=_int(body["events"], "events"),
        first_recorded_at=time(body["first_recorded_at"]),
        last_recorded_at=time(body["last_recorded_at"]),
        before=time(body["before"]),
        created_at=time(body["created_at"]),
        files=files,
    )


def _check_consistent(manifest: Manifest) -> None:
    """The files tile the range in order; names are ours (never a path elsewhere)."""
    if not manifest.first_recorded_at <= manifest.last_recorded_at < manifest.before:
        raise ManifestError(f"{NAME}: its time range is not before its boundary")
    files = manifest.files
    if not files:
        raise ManifestError(f"{NAME} lists no files")
    previous = manifest.first_position - 1
    for entry in files:
        if not _FILE_NAME.fullmatch(entry.name) or not _SHA256.fullmatch(entry.sha256):
            raise ManifestError(f"{NAME}: {entry.name!r} is not an archive file name and hash")
        if not previous < entry.first_position <= entry.last_position:
            raise ManifestError(f"{NAME}: {entry.name} is out of order or empty")
        if entry.events < 1 or entry.events > entry.last_position - entry.first_position + 1:
            raise ManifestError(f"{NAME}: {entry.name} cannot hold {entry.events} events")
        previous = entry.last_position
    if files[0].first_position != manifest.first_position or previous != manifest.last_position:
        raise ManifestError(f"{NAME}: the files do not cover positions it names")
    if sum(entry.events for entry in files) != manifest.events:
        raise ManifestError(f"{NAME}: the files' counts do not add up to {manifest.events}")
