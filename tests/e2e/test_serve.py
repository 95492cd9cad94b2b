"""`clustermon serve` as an operator starts it."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_a_second_server_on_a_taken_port_refuses_to_start_and_the_first_keeps_serving(server):
    # Each worker binds with SO_REUSEPORT, which would let a second server share the port and
    # silently take part of the traffic: serve must refuse instead, before touching the database.
    server.cli("db", "upgrade")
    server.start()
    second = subprocess.run(
        [sys.executable, "-c", "from api.cli import main; main()", "serve"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode != 0
    assert f"cannot serve on 127.0.0.1:{server.port}" in second.stderr
    assert "in use" in second.stderr
    for _ in range(20):  # every answer still comes from the first server
        with urllib.request.urlopen(server.url + "/healthz", timeout=5) as response:
            assert response.status == 200
    assert server.process.poll() is None
