"""One archive file: gzip'd JSON Lines, one event per line, the row exactly as stored.

Why gzip'd JSON Lines rather than Parquet: it needs nothing beyond the standard library to
write or read (`zcat events-*.jsonl.gz | jq`, `pandas.read_json(path, lines=True)`, DuckDB's
`read_json_auto('events-*.jsonl.gz')`), a file stays readable line by line when only part of
it survives, and the heartbeat mix compresses to well under a tenth of its size in the
database (bench/retention_archive.py), which is the target; pyarrow would add ~100 MB of
dependency for columnar queries nobody runs on an archive often.

A line holds every column under its column name: `data` and `metadata` are the JSON *text* as
the database stored it (a string inside the line), so a restore writes back the same bytes;
times are RFC 3339 in UTC (microseconds when not zero). The gzip header carries no name and no
time, so the same events always make the same bytes (a rerun after a crash writes an identical
file).
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO
from uuid import UUID

import orjson

from eventstore.retention import COLUMNS

SUFFIX = ".jsonl.gz"
# Level 6 (gzip's default), measured on the heartbeat mix (~700 bytes a line): 49 bytes per
# event at ~34,000 events/s; level 1: 60 bytes at twice the speed; level 9: 47 bytes at half.
# (xz: 27 bytes, but ~1,100 events/s: ten million events would take hours.)
COMPRESSLEVEL = 6
_LINES_PER_WRITE = 1_000


def file_name(first_position: int, last_position: int) -> str:
    return f"events-{first_position:012d}-{last_position:012d}{SUFFIX}"


def encode(row: Mapping[str, Any]) -> bytes:
    """One line. orjson writes the UUID as text and the (UTC) times as RFC 3339 itself, in C:
    most of the cost of a line otherwise."""
    return orjson.dumps({name: row[name] for name in COLUMNS}) + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """A line back into the row as the store takes it (raises ValueError/KeyError/TypeError
    on a malformed line)."""
    raw = orjson.loads(line)
    row = {name: raw[name] for name in COLUMNS}
    for name in ("position", "version", "schema_version"):
        if not isinstance(row[name], int) or isinstance(row[name], bool):
            raise TypeError(f"{name} is not an integer")
    for name in ("stream", "type", "data", "metadata"):
        if not isinstance(row[name], str):
            raise TypeError(f"{name} is not a string")
    row["event_id"] = UUID(row["event_id"])
    row["occurred_at"] = datetime.fromisoformat(row["occurred_at"])
    row["recorded_at"] = datetime.fromisoformat(row["recorded_at"])
    return row


@dataclass(frozen=True, slots=True)
class Written:
    """What one file holds (its manifest entry, once named)."""

    sha256: str
    bytes: int
    events: int
    first_position: int
    last_position: int
    first_recorded_at: datetime
    last_recorded_at: datetime


class _Hashing:
    """A file object that hashes and counts what goes through it (gzip writes into it)."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


def write_rows(file: BinaryIO, rows: Iterable[Mapping[str, Any]]) -> Written:
    """Write `rows` (at least one, in position order) compressed into `file`."""
    hashing = _Hashing(file)
    count, first, last = 0, None, None
    lines: list[bytes] = []
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=hashing, compresslevel=COMPRESSLEVEL, mtime=0
    ) as out:
        for row in rows:
            lines.append(encode(row))
            if len(lines) == _LINES_PER_WRITE:  # one call into zlib per many lines
                out.write(b"".join(lines))
                lines.clear()
            if first is None:
                first = row
            last = row
            count += 1
        out.write(b"".join(lines))
    if first is None or last is None:
        raise ValueError("an archive file holds at least one event")
    return Written(
        sha256=hashing.sha256.hexdigest(),
        bytes=hashing.size,
        events=count,
        first_position=first["position"],
        last_position=last["position"],
        first_recorded_at=first["recorded_at"],
        last_recorded_at=last["recorded_at"],
    )


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of one archive file, in the file's order."""
    with gzip.open(path, "rb") as lines:
        for line in lines:
            yield decode(line)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
