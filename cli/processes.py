"""Start the scheduler beside another process (for `clustermon run`, the all-in-one).

The scheduler runs in its own process, never inside gunicorn workers: it is spawned as
`clustermon scheduler --exit-with-parent PID`, so it stops by itself when its parent goes away
(even after a SIGKILL of the parent), and several can run against one database (one leads).
"""

from __future__ import annotations

import os
import subprocess
import sys

# Another clustermon command, run by the same interpreter and environment.
CLUSTERMON = [sys.executable, "-m", "cli"]
# The simulator's agent token goes by the environment: a command line is readable by every
# local user.
SIMULATOR_TOKEN = "CLUSTERMON_SIMULATOR_TOKEN"


def spawn_scheduler(
    database_url: str,
    *,
    sweep_interval_seconds: float | None = None,
    name: str | None = None,
    env: dict[str, str] | None = None,
    **popen_kwargs,
) -> subprocess.Popen:
    """Start `clustermon scheduler` as a child process and return it (terminate() stops it)."""
    child_env = {**os.environ, **(env or {}), "CLUSTERMON_DATABASE_URL": database_url}
    if sweep_interval_seconds is not None:
        child_env["CLUSTERMON_SWEEP_INTERVAL_SECONDS"] = str(sweep_interval_seconds)
    command = [
        *CLUSTERMON,
        "scheduler",
        "--exit-with-parent",
        str(os.getpid()),
    ]
    if name:
        command += ["--name", name]
    return subprocess.Popen(command, env=child_env, **popen_kwargs)
