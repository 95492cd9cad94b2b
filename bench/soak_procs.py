"""CPU and resident memory per process of the soak, from /proc (Linux; psutil is not installed).

Each watched root (a `serve` instance's gunicorn master, a scheduler, the load generator) is
reported with its descendants: `serve1`, `serve1.w1`, `serve1.w2`, ... (workers numbered by
pid order; a replaced worker shows as a new pid in the JSON). The PostgreSQL backends of the
soak's database are one row, `postgres`, summed: their RSS counts the shared buffers each one
touched, so it is shown but left out of the leak check.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import TICK, database_backends, machine_ticks, processes

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def ticks(pid: int) -> int | None:
    """User + system CPU ticks of one process (all its threads) so far; None if it is gone."""
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    return None


def rss_bytes(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES
    return None


def descendants(root: int, found: dict[int, tuple[int, str]]) -> list[int]:
    """The children, grandchildren, ... of `root`, in pid order."""
    ours, grown = {root}, True
    while grown:
        grown = False
        for pid, (parent, _) in found.items():
            if parent in ours and pid not in ours:
                ours.add(pid)
                grown = True
    return sorted(ours - {root})


@dataclass
class ProcessSample:
    cpu_percent: float | None  # of one core, since the previous sample
    rss_mb: float | None
    pids: list[int]
    count: int = 1


class ProcessWatch:
    def __init__(self, roots: dict[str, int], database: str | None):
        self.roots = roots  # label -> pid
        self.database = database  # PostgreSQL database name, or None (SQLite)
        self._ticks: dict[int, int] = {}
        self._at = time.monotonic()
        self._machine = machine_ticks()
        self._first = True  # the first sample only sets the baseline of CPU

    def sample(self) -> tuple[dict[str, ProcessSample], float]:
        """Per label: CPU % of one core since the last sample and RSS now; and how busy the
        whole machine was (% of all its cores), from /proc/stat."""
        now = time.monotonic()
        elapsed = max(now - self._at, 1e-6)
        found = processes()
        groups: dict[str, list[int]] = {}
        for label, root in self.roots.items():
            groups[label] = [root]
            for n, pid in enumerate(descendants(root, found), 1):
                groups[f"{label}.w{n}"] = [pid]
        if self.database:
            groups["postgres"] = sorted(database_backends(self.database, found))
        seen: dict[int, int] = {}
        result = {}
        for label, pids in groups.items():
            cpu = rss = 0.0
            known = False
            for pid in pids:
                now_ticks = ticks(pid)
                if now_ticks is None:
                    continue
                seen[pid] = now_ticks
                if not self._first:  # a process born since the last sample counts from 0
                    cpu += now_ticks - self._ticks.get(pid, 0)
                    known = True
                rss += rss_bytes(pid) or 0
            result[label] = ProcessSample(
                cpu_percent=100.0 * cpu / TICK / elapsed if known else None,
                rss_mb=rss / 2**20 if pids else None,
                pids=pids,
                count=len(pids),
            )
        idle, total = machine_ticks()
        idle0, total0 = self._machine
        busy = 100.0 * (1 - (idle - idle0) / max(total - total0, 1))
        self._ticks, self._at, self._machine = seen, now, (idle, total)
        self._first = False
        return result, busy
