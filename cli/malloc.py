"""glibc's malloc, tuned for a long-lived process whose work moves between threads.

glibc gives threads that allocate at the same time arenas of their own, up to eight per core,
and memory freed in one arena serves only that arena. The scheduler runs its jobs on
APScheduler's pool of threads in turn, so over the minutes each arena grew to the peak of the
jobs that happened to run on it: RSS crept up ~1 MB a minute under the capacity soak. With two
arenas it grew a quarter as fast (BENCHMARKS.md, "Capacity of one box": +14.4% against +3.3%
over 15 minutes); scheduler/memory.py hands the rest back after each snapshot. Same effect as
MALLOC_ARENA_MAX=2, which only the environment of a fresh process can set; mallopt applies it
from here, before the jobs' threads start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_ARENA_MAX = -8  # glibc's <malloc.h>
ARENAS = 2


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process; whether it could (Linux with glibc only:
    elsewhere, and with musl, there is nothing to tune and nothing happens)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))
