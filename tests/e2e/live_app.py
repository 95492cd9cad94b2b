"""An app served over real HTTP by werkzeug in a thread of the test process: cheaper than a
`clustermon serve` process, and configurable like the app fixtures (a live stream the test can
bound with SSE_MAX_SECONDS, no rate limits in the way of a fuzzer)."""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from werkzeug.serving import make_server

from api.services import services
from api.tokens import create_token
from cli.main import create_app


@dataclass(frozen=True)
class LiveApp:
    url: str
    tokens: dict[str, str]  # role -> token


@contextlib.contextmanager
def serve(sqlite_template: str, folder: Path, **config) -> Iterator[LiveApp]:
    path = folder / "clustermon.db"
    shutil.copy(sqlite_template, path)
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{path}",
            "SECRET_KEY": "live-tests-secret",  # channels are refused under the default
            "SSE_MAX_SECONDS": 0.2,  # a live stream ends soon: a client reads it whole
            "NEW_SERVERS_PER_HOUR": 0,
            "EXPENSIVE_READS_PER_TOKEN": 0,
            "EXPENSIVE_READS_PER_WORKER": 0,
            **config,
        }
    )
    svc = services(app)
    tokens = {
        role: create_token(svc.engine, svc.clock, f"live-{role}", role)
        for role in ("agent", "viewer", "admin")
    }
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveApp(f"http://127.0.0.1:{server.server_port}", tokens)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        if "clustermon_tail" in app.extensions:  # a live stream was opened
            app.extensions["clustermon_tail"].stop()
        svc.engine.dispose()
