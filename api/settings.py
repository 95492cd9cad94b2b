"""Process settings from CLUSTERMON_* environment variables.

Only what belongs to the process lives here; what belongs to the cluster (timeouts, flags) is
configuration changed through the API and recorded as events.
"""

import os
from pathlib import Path

DEFAULTS = {
    "DATABASE_URL": None,  # None: a SQLite file in the instance folder
    "SECRET_KEY": "dev-only-change-me",
    "SWEEP_INTERVAL_SECONDS": 1.0,
    "HOST": "127.0.0.1",
    "PORT": 8000,
    "WORKERS": 2,
    "THREADS": 8,
    "GEVENT_STREAMS": 200,  # live streams (SSE) per gevent worker
    "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
    # Expensive reads (what-if, audit, reports, time travel) in flight: see api/limits.py.
    # per token and worker process (the dashboard asks for outages and failovers at once)
    "EXPENSIVE_READS_PER_TOKEN": 2,
    "EXPENSIVE_READS_PER_WORKER": 3,  # per worker process, above one token's; 0: no limit
    # Servers the cluster never heard of that heartbeats may add per hour, cluster-wide
    # (api/new_servers.py); 0: no cap.
    "NEW_SERVERS_PER_HOUR": 100,
}


def from_environment(instance_path: str) -> dict:
    settings = {}
    for name, default in DEFAULTS.items():
        raw = os.environ.get(f"CLUSTERMON_{name}")
        if raw is None:
            settings[name] = default
        elif isinstance(default, bool) or default is None or isinstance(default, str):
            settings[name] = raw
        else:
            settings[name] = type(default)(raw)
    if not settings["DATABASE_URL"]:
        Path(instance_path).mkdir(mode=0o700, parents=True, exist_ok=True)  # see api/app.py
        settings["DATABASE_URL"] = f"sqlite:///{Path(instance_path) / 'clustermon.db'}"
    return settings
