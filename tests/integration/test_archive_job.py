"""The scheduler's retention job: set by CLUSTERMON_RETENTION_DAYS, it archives what is older
than that many days into its own folder under CLUSTERMON_ARCHIVE_DIR (default: the instance
folder), once per run, and finishes an interrupted run in the same folder."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from eventstore import retention as log_retention
from retention.verify import verify
from scheduler.retention_job import RetentionPolicy, run_retention
from scheduler.service import SchedulerService, build_scheduler
from tests.integration import projection_support as ps


def test_the_policy_comes_from_the_environment(tmp_path):
    assert RetentionPolicy.from_environment(str(tmp_path), {}) is None
    default = RetentionPolicy.from_environment(str(tmp_path), {"CLUSTERMON_RETENTION_DAYS": "30"})
    assert default == RetentionPolicy(30.0, tmp_path / "archives")
    chosen = RetentionPolicy.from_environment(
        str(tmp_path), {"CLUSTERMON_RETENTION_DAYS": "7.5", "CLUSTERMON_ARCHIVE_DIR": "/srv/a"}
    )
    assert chosen == RetentionPolicy(7.5, Path("/srv/a"))
    for bad in ("0", "-3", "a month"):
        with pytest.raises(ValueError, match="must be a positive number of days"):
            RetentionPolicy.from_environment(str(tmp_path), {"CLUSTERMON_RETENTION_DAYS": bad})


def test_a_daily_run_archives_what_is_older_than_the_days(store, clock, tmp_path):
    """The store's clock stands in for freezegun: orjson cannot serialise freezegun's
    FakeDatetime inside events, and the job takes `now` like every scheduler function."""
    for _ in range(4 * 24):  # four days, a heartbeat an hour
        store.append([ps.beat(store)])
        clock.advance(hours=1)
    policy = RetentionPolicy(days=2, directory=tmp_path)

    first = run_retention(store, clock(), policy)

    assert first is not None and first.manifest is not None
    assert first.directory == tmp_path / "from-000000000001"
    cut = clock() - timedelta(days=2)
    assert first.manifest.before == cut
    assert log_retention.oldest_recorded_at(store.engine) == cut
    assert run_retention(store, clock(), policy) is None  # nothing new is old enough

    clock.advance(days=1)
    store.append([ps.beat(store)])
    second = run_retention(store, clock(), policy)
    assert second is not None and second.manifest is not None
    assert second.directory.name == f"from-{first.manifest.last_position + 1:012d}"
    assert verify(first.directory) == first.manifest
    assert [a["path"] for a in log_retention.archives(store.engine)] == [
        str(first.directory),
        str(second.directory),
    ]


def test_the_job_is_in_the_table_and_runs_only_when_set(store, clock, tmp_path):
    for _ in range(3):
        store.append([ps.beat(store)])
        clock.advance(days=1)
    unset = SchedulerService(store, clock, detector="a")
    set_ = SchedulerService(
        store, clock, detector="b", retention=RetentionPolicy(1, tmp_path / "archives")
    )
    try:
        assert "retention" not in {job.id for job in build_scheduler(unset).get_jobs()}
        jobs = {job.id: job for job in build_scheduler(set_).get_jobs()}
        assert jobs["retention"].trigger.interval == timedelta(days=1)
        unset.retention_job()
        assert log_retention.oldest_position(store.engine) == 1
        unset.step_down()
        set_.retention_job()
        assert log_retention.oldest_position(store.engine) == 3
        assert (tmp_path / "archives" / "from-000000000001" / "manifest.json").exists()
    finally:
        for service in (unset, set_):
            service.step_down()
            service.collector.close()
