"""`serve`'s gunicorn configuration: its server hooks, for both worker classes.

gunicorn's master imports this module before it forks the workers and before gevent patches
them: hence nothing imported at the top but the standard library and gunicorn's own modules.
"""

from __future__ import annotations

import os
import shutil
import sys

from api.server_errors import post_worker_init

__all__ = ["loglevel", "on_exit", "post_fork", "post_worker_init"]

# gunicorn's own start lines ("Listening at:  (pid)": no address when each worker binds its own
# socket) are replaced by post_fork's one line; its warnings and errors still show.
loglevel = "warning"


def post_fork(server, worker) -> None:
    """Say where clustermon serves, in plain words, once: when the first worker has bound its
    socket (SO_REUSEPORT: each worker binds its own, before this hook runs; otherwise the
    master bound it before any worker), so a request sent now is queued, not refused."""
    if worker.age != 1:  # a worker restarted later, or the others of the first batch
        return
    for bind in server.cfg.bind:
        base = f"http://{bind}"
        sys.stderr.write(f"clustermon is serving {base}/ (dashboard); API at {base}/api/v1\n")
    sys.stderr.flush()


def on_exit(server) -> None:
    """Remove the metrics folder that `clustermon serve` made for its workers (cli/main.py
    names it in CLUSTERMON_MADE_METRICS_DIR): every run made a new one and none was removed.
    A folder the operator chose (PROMETHEUS_MULTIPROC_DIR set beforehand) stays."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder and folder == os.environ.get("CLUSTERMON_MADE_METRICS_DIR"):
        shutil.rmtree(folder, ignore_errors=True)
