"""SIGKILL of `clustermon agent` mid-work (issue #17's fault suite): a heartbeat the agent had
spooled is never lost and never recorded twice, whether it was waiting for clustermon or on its
way there when the agent died. The agent started again on the same spool sends what is left."""

from __future__ import annotations

import signal
import sys
from datetime import datetime

import pytest

from tests.e2e.test_agent import AgentProcess, _call, _logged_heartbeats, _stop, product  # noqa: F401
from tests.faults.conftest import Clustermon, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX"),
]


def _kill(agent: AgentProcess) -> list[tuple[str, str, str]]:
    """SIGKILL the agent; what it had logged as spooled until then."""
    assert agent.process is not None
    agent.process.send_signal(signal.SIGKILL)
    agent.process.wait(timeout=10)
    return agent.spooled()


def test_a_killed_agent_loses_and_repeats_nothing_it_spooled(tmp_path, product):  # noqa: F811
    clustermon = Clustermon(f"sqlite:///{tmp_path / 'clustermon.db'}", tmp_path)
    clustermon.env["TMPDIR"] = str(tmp_path)
    clustermon.cli("db", "upgrade")
    admin = clustermon.cli("token", "create", "--role", "admin", "--name", "ops")
    token = clustermon.cli("token", "create", "--role", "agent", "--name", "agent01")
    spooled: list[tuple[str, str, str]] = []
    agent = AgentProcess(tmp_path, clustermon.url, token, product.url, period=1)
    try:
        clustermon.serve()
        configuration = {"heartbeat_frequency_seconds": 1, "stale_timeout_seconds": 3}
        _call(clustermon.url, "PUT", "/api/v1/cluster/configuration", admin, configuration)

        # 1. Killed while delivering: clustermon up, heartbeats flowing.
        agent.start()
        wait_until(lambda: len(_logged_heartbeats(clustermon.url, admin)) >= 4, 30, "delivery")
        spooled += _kill(agent)

        # 2. Killed while clustermon is away: what it spooled meanwhile waits on disk.
        agent.start()
        wait_until(lambda: len(agent.spooled()) >= 2, 30, "the restarted agent spooling")
        _stop(clustermon)
        made = len(agent.spooled())
        wait_until(lambda: len(agent.spooled()) >= made + 4, 30, "spooled while away")
        spooled += _kill(agent)

        # 3. Both back: the restarted agent sends what the killed one left.
        clustermon.serve()
        agent.start()
        wanted = {event_id for event_id, _, _ in spooled}

        def delivered() -> bool:
            return wanted <= {e["event_id"] for e in _logged_heartbeats(clustermon.url, admin)}

        wait_until(delivered, 60, "every heartbeat spooled before a kill delivered")
        assert agent.terminate() == 0
        logged = _logged_heartbeats(clustermon.url, admin)
    finally:
        agent.kill()
        clustermon.kill()

    ids = [e["event_id"] for e in logged]
    assert len(ids) == len(set(ids))  # none twice
    by_id = {e["event_id"]: e for e in logged}
    for event_id, _, sent_at in spooled:  # each with the time it was made
        assert datetime.fromisoformat(by_id[event_id]["data"]["sent_at"]) == (
            datetime.fromisoformat(sent_at)
        )
