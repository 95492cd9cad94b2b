"""`serve`'s gunicorn configuration: its server hooks, for both worker classes.

gunicorn's master imports this module before it forks the workers and before gevent patches
them: hence nothing imported at the top but the standard library and gunicorn's own modules.
"""

from __future__ import annotations

import os
import shutil

from api.server_errors import post_worker_init

__all__ = ["on_exit", "post_worker_init"]


def on_exit(server) -> None:
    """Remove the metrics folder that `clustermon serve` made for its workers (cli/main.py
    names it in CLUSTERMON_MADE_METRICS_DIR): every run made a new one and none was removed.
    A folder the operator chose (PROMETHEUS_MULTIPROC_DIR set beforehand) stays."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder and folder == os.environ.get("CLUSTERMON_MADE_METRICS_DIR"):
        shutil.rmtree(folder, ignore_errors=True)
