"""Test-only pause points, so a fault test can SIGKILL the archiver at a known step.

With `CLUSTERMON_TEST_PAUSE_AT=<name>` the archiver prints `clustermon: paused at <name>` on
stderr when it reaches that step and then sleeps until killed; the test waits for the line (a
rendezvous, not a timing assumption). Unset, every point is a dictionary lookup.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

ENV = "CLUSTERMON_TEST_PAUSE_AT"
AFTER_FILES = "after_files"  # every data file renamed into place, no manifest yet
BEFORE_MANIFEST_RENAME = "before_manifest_rename"  # manifest.json.tmp written, not renamed
AFTER_SNAPSHOT = "after_snapshot"  # manifest in place, boundary snapshot written
IN_DELETE = "in_delete"  # the delete's statements ran, its transaction not committed


def pause_point(name: str) -> None:
    if os.environ.get(ENV) != name:
        return
    print(f"clustermon: paused at {name}", file=sys.stderr, flush=True)
    while True:
        time.sleep(3600)


@contextmanager
def pausing_before_commit(engine: sa.Engine, name: str) -> Iterator[None]:
    """Pause at `name` when a transaction on `engine` is about to commit (the delete's)."""
    if os.environ.get(ENV) != name:
        yield
        return

    def on_commit(_connection) -> None:
        pause_point(name)

    sa.event.listen(engine, "commit", on_commit)
    try:
        yield
    finally:
        sa.event.remove(engine, "commit", on_commit)
