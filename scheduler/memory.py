"""Give the C allocator's free memory back to the system (glibc's `malloc_trim`).

Why the scheduler needs it (BENCHMARKS.md, "Capacity of one box"): the snapshot job builds and
drops whole cluster states every minute (a decoded snapshot, pages of the log, encoded blobs).
What it frees stays with glibc, in holes between blocks still in use, and glibc hands memory
back to the system only from the top of a heap. In the 800-server soak the scheduler's RSS rose
about 1 MB a minute while the memory in use (the traced Python heap, glibc's in-use bytes)
stayed flat: only glibc's free bytes grew. Two arenas (cli/malloc.py) slow that down; this
returns the free pages of every arena, for a few milliseconds a minute.

Elsewhere (musl, macOS, Windows) there is no `malloc_trim` and nothing is done.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable


def _find_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library this process already uses
    except (OSError, AttributeError):  # musl has no malloc_trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _find_malloc_trim()


def release_free_memory() -> bool:
    """Return the allocator's free pages to the system; whether anything was returned (False
    also where the C library cannot do it)."""
    return bool(_malloc_trim(0)) if _malloc_trim is not None else False
