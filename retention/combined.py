"""Archived and live events as one log, for the audit of a period that reaches before the
retention boundary (`clustermon audit --archive DIR`).

The audit's passes read the log through the store (by position, stream, time) and seed from
snapshots; rather than teach each of them about archives, the archives' events and the live
ones up to the period's end are copied, positions preserved, into a scratch database that the
passes then read like any log. The fold starts from the newest snapshot before the earliest
archive given (the boundary snapshot of the archive before it), copied along.

Refused with a sentence (ArchiveGap) when the chain has a hole: an archive recorded in the
database between those given (or between the last given and the live log) was left out, or no
snapshot remains to start the earliest one from.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from eventstore import retention as log_retention
from eventstore.db import write_connection
from eventstore.store import EventStore
from projections.readmodel.tables import snapshots
from retention import jsonl
from retention.manifest import Manifest
from retention.verify import verify


class ArchiveGap(ValueError):
    """The archives given and the live log do not make one unbroken log."""


def combine(
    live: EventStore, directories: Sequence[Path], target: sa.Engine, until: datetime
) -> int:
    """Copy the archives in `directories` (each verified first), the snapshot to start from and
    the live events recorded up to `until` into `target` (a migrated, empty database). Returns
    the number of events copied."""
    found = sorted(((verify(d), d) for d in directories), key=lambda pair: pair[0].first_position)
    for (earlier, a), (later, b) in itertools.pairwise(found):
        if later.first_position <= earlier.last_position:
            raise ArchiveGap(f"{a} and {b} overlap (positions {later.first_position}-…)")
    first = found[0][0]
    _check_no_archive_left_out(live, [m for m, _ in found])
    up_to = live.last_position_at(until)
    seed = _copy_seed(live, target, first)
    copied = log_retention.restore_rows(target, _rows(found))
    oldest = log_retention.oldest_position(live.engine)
    if oldest is not None and up_to >= oldest:
        copied += log_retention.restore_rows(
            target, log_retention.iter_range(live.engine, oldest, up_to)
        )
    _copy_snapshots(live, target, after=seed, up_to=up_to)
    return copied


def _check_no_archive_left_out(live: EventStore, given: list[Manifest]) -> None:
    first, last = given[0].first_position, given[-1].last_position
    covered = {(m.first_position, m.last_position) for m in given}
    for row in log_retention.archives(live.engine):
        inside = first <= row["first_position"] and row["last_position"] <= last
        after = row["first_position"] > last
        if (inside or after) and (row["first_position"], row["last_position"]) not in covered:
            raise ArchiveGap(
                f"the archive of positions {row['first_position']}-{row['last_position']} in"
                f" {row['path']} lies between these and the live log: give it too (--archive)"
            )


def _copy_seed(live: EventStore, target: sa.Engine, first: Manifest) -> int:
    """Copy the newest snapshot before the earliest archive; its position (0: none needed)."""
    if first.first_position <= 1:
        return 0
    before = [
        r for r in log_retention.archives(live.engine) if r["last_position"] < first.first_position
    ]
    needed = max((r["last_position"] for r in before), default=first.first_position - 1)
    with live.engine.connect() as conn:
        row = conn.execute(
            sa.select(snapshots)
            .where(snapshots.c.position < first.first_position)
            .order_by(snapshots.c.position.desc())
            .limit(1)
        ).first()
    if row is None or row.position < needed:
        raise ArchiveGap(
            f"no snapshot of the cluster at position {needed} is left to start the archive of"
            f" positions {first.first_position}-{first.last_position} from: give the archives"
            " before it too"
        )
    _insert(target, [dict(row._mapping)])
    return row.position


def _copy_snapshots(live: EventStore, target: sa.Engine, *, after: int, up_to: int) -> None:
    """The live snapshots within the copied positions: the passes then fold short tails."""
    with live.engine.connect() as conn:
        rows = [
            dict(r._mapping)
            for r in conn.execute(
                sa.select(snapshots).where(
                    snapshots.c.position > after, snapshots.c.position <= up_to
                )
            )
        ]
    _insert(target, rows)


def _insert(target: sa.Engine, rows: list[dict[str, Any]]) -> None:
    if rows:
        with write_connection(target) as conn, conn.begin():
            conn.execute(snapshots.insert(), rows)


def _rows(found: list[tuple[Manifest, Path]]) -> Iterator[dict[str, Any]]:
    for manifest, directory in found:
        for entry in manifest.files:
            yield from jsonl.read_rows(directory / entry.name)
