"""Files that are either whole or absent after a crash: written under a temporary name,
fsync'd, renamed, and the directory fsync'd so that the rename itself survives a power cut."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

TEMPORARY_SUFFIX = ".tmp"


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(
    path: Path,
    write: Callable[[BinaryIO], Any],
    *,
    before_rename: Callable[[], None] | None = None,
) -> None:
    """Write `path` through `write(file)`; until the final rename only `path.tmp` exists.
    `before_rename` runs between the fsync and the rename (a test's pause point)."""
    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    with temporary.open("wb") as file:
        write(file)
        file.flush()
        os.fsync(file.fileno())
    if before_rename is not None:
        before_rename()
    os.replace(temporary, path)
    fsync_directory(path.parent)
