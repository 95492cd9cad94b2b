"""The scheduler hands glibc's free memory back to the system (scheduler/memory.py)."""

import platform
import sys

import pytest

from scheduler.memory import release_free_memory

glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@pytest.mark.skipif(not glibc, reason="malloc_trim is glibc's")
def test_freed_memory_between_live_blocks_leaves_the_process():
    # 60 MB in 12 KiB blocks (malloc, not Python's small-object allocator), one in ten kept:
    # the freed nine tenths are holes glibc keeps, the way the snapshot job's garbage was.
    blocks = [bytearray(12 * 1024) for _ in range(5000)]
    kept = blocks[::10]
    del blocks
    before = resident_bytes()

    assert release_free_memory()

    assert before - resident_bytes() > 30 * 2**20
    assert len(kept) == 500  # the blocks in use are untouched


@pytest.mark.skipif(glibc, reason="only where there is no malloc_trim")
def test_without_glibc_nothing_happens():
    assert release_free_memory() is False
