"""The archive's manifest and file format (retention/manifest.py, retention/jsonl.py): a
manifest reads back as written, any changed byte in it is caught, and a file's rows come back
exactly as stored."""

from __future__ import annotations

import gzip
import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from retention import jsonl
from retention import manifest as manifests
from retention.manifest import FileEntry, Manifest, ManifestError

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def sample() -> Manifest:
    return Manifest(
        first_position=1,
        last_position=12,
        events=11,  # a hole at 5: a rolled-back append
        first_recorded_at=T0,
        last_recorded_at=T0 + timedelta(minutes=11),
        before=T0 + timedelta(minutes=12),
        created_at=T0 + timedelta(days=30),
        files=(
            FileEntry(jsonl.file_name(1, 6), "a" * 64, 700, 5, 1, 6),
            FileEntry(jsonl.file_name(7, 12), "b" * 64, 720, 6, 7, 12),
        ),
    )


def test_a_manifest_reads_back_as_written():
    raw = manifests.dumps(sample())
    assert manifests.loads(raw) == sample()
    assert raw.startswith(b'{\n  "before": "2026-11-27T10:12:00+00:00"')


def test_every_changed_byte_of_a_manifest_is_caught():
    raw = manifests.dumps(sample())
    for i in range(len(raw)):
        flipped = bytearray(raw)
        flipped[i] ^= 0xFF
        with pytest.raises(ManifestError):
            manifests.loads(bytes(flipped))
        for bit in range(8):  # a single bit, too: a digit that stays a digit
            one = bytearray(raw)
            one[i] ^= 1 << bit
            with pytest.raises(ManifestError):
                manifests.loads(bytes(one))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"events": 12}, "do not add up"),
        ({"last_position": 13}, "do not cover"),
        ({"files": ()}, "lists no files"),
        ({"before": T0 + timedelta(minutes=11)}, "not before its boundary"),
        ({"files": (FileEntry("../../etc/passwd", "a" * 64, 1, 11, 1, 12),)}, "not an archive"),
        (
            {"files": (FileEntry(jsonl.file_name(1, 12), "a" * 64, 1, 13, 1, 12),)},
            "cannot hold",
        ),
    ],
)
def test_a_manifest_that_does_not_add_up_is_refused(change, message):
    # Signed by whoever wrote it, yet inconsistent: refused all the same.
    with pytest.raises(ManifestError, match=message):
        manifests.loads(manifests.dumps(replace(sample(), **change)))


def test_a_foreign_or_newer_manifest_says_so():
    with pytest.raises(ManifestError, match="not valid JSON"):
        manifests.loads(b"{")
    with pytest.raises(ManifestError, match="not a clustermon archive"):
        manifests.loads(b'{"format": "other"}')
    with pytest.raises(ManifestError, match="format_version 2"):
        manifests.loads(b'{"format": "clustermon-archive", "format_version": 2}')


def row(position: int) -> dict:
    return {
        "position": position,
        "event_id": UUID(int=position),
        "stream": "web01/service",
        "version": position,
        "type": "HeartbeatRecorded",
        "schema_version": 2,
        "data": '{"server":"web01", "b": 1.50, "a":"\\u00e9"}',  # not orjson's own spelling
        "metadata": "{}",
        "occurred_at": T0 + timedelta(microseconds=position),
        "recorded_at": T0 + timedelta(seconds=position),
    }


def test_a_file_holds_the_rows_as_stored_and_the_same_rows_make_the_same_bytes():
    rows = [row(p) for p in (3, 4, 9)]
    first, second = io.BytesIO(), io.BytesIO()
    written = jsonl.write_rows(first, rows)
    jsonl.write_rows(second, rows)
    assert first.getvalue() == second.getvalue()  # no name or time in the gzip header
    assert (written.events, written.first_position, written.last_position) == (3, 3, 9)
    assert written.bytes == len(first.getvalue())
    lines = gzip.decompress(first.getvalue()).splitlines()
    assert [jsonl.decode(line) for line in lines] == rows


def test_an_empty_file_is_refused():
    with pytest.raises(ValueError, match="at least one event"):
        jsonl.write_rows(io.BytesIO(), [])
