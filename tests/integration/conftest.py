"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest

from scheduler.service import SchedulerService


@pytest.fixture
def services(store, clock):
    """Make SchedulerServices on the test's store (by detector name); each steps down and
    closes its poller at the end."""
    made = []

    def make(name):
        service = SchedulerService(store, clock, detector=name)
        made.append(service)
        return service

    yield make
    for service in made:
        service.step_down()
        service.collector.close()
