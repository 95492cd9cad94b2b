"""The retention job: once a day the leader archives the events older than
CLUSTERMON_RETENTION_DAYS to CLUSTERMON_ARCHIVE_DIR (retention/archive.py), then the log no
longer holds them. Unset CLUSTERMON_RETENTION_DAYS: no job, the log keeps everything.

Each run writes its own folder under the archive directory, named after the first position it
takes (`from-000000000001`): a run that was interrupted leaves its folder unfinished, and the
next run starts at the same position, so it finishes (or rewrites) that same folder instead of
leaving a stray copy beside a new one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from eventstore.retention import RangeChanged, oldest_position
from eventstore.store import EventStore
from retention.archive import ArchiveRefused, ArchiveResult, archive
from retention.verify import ArchiveDamaged

log = logging.getLogger("clustermon.scheduler")

DAYS_ENV = "CLUSTERMON_RETENTION_DAYS"
DIRECTORY_ENV = "CLUSTERMON_ARCHIVE_DIR"
DEFAULT_DIRECTORY = "archives"  # under the instance folder, beside the default SQLite file
EVERY_SECONDS = 86_400


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    days: float  # events recorded more than this many days ago are archived
    directory: Path  # each run writes a folder of its own in here

    @classmethod
    def from_environment(
        cls, instance_path: str, environ: Mapping[str, str] = os.environ
    ) -> RetentionPolicy | None:
        """The policy CLUSTERMON_RETENTION_DAYS and CLUSTERMON_ARCHIVE_DIR set, or None.
        A value that is not a positive number stops the start (ValueError saying so)."""
        raw = environ.get(DAYS_ENV, "").strip()
        if not raw:
            return None
        try:
            days = float(raw)
        except ValueError:
            days = 0
        if not days > 0:
            raise ValueError(f"{DAYS_ENV} must be a positive number of days, not {raw!r}")
        directory = environ.get(DIRECTORY_ENV) or str(Path(instance_path) / DEFAULT_DIRECTORY)
        return cls(days, Path(directory))


def run_retention(
    store: EventStore, now: datetime, policy: RetentionPolicy
) -> ArchiveResult | None:
    """Archive what is older than the policy's days at `now`; None when nothing is. A run
    that cannot finish says why in one log line and leaves the log as it was."""
    first = oldest_position(store.engine)
    if first is None:
        return None
    folder = policy.directory / f"from-{first:012d}"
    try:
        result = archive(store, now - timedelta(days=policy.days), folder)
    except (ArchiveRefused, ArchiveDamaged, RangeChanged, OSError) as exc:
        log.warning("retention: nothing archived this time: %s", exc)
        return None
    if result.manifest is None:
        return None
    log.info("retention: %s", result.describe())
    return result
