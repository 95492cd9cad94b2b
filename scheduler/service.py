"""The scheduler process: leader election plus the jobs, wired into APScheduler 3.

Every job body is one line calling a plain function; the election decides whether this process
runs them. Standbys keep their deadline index warm (they follow the log too), so a takeover
starts sweeping at once instead of folding the whole log first.

Jobs (explicit ids; all `coalesce=True`, `max_instances=1`):
- `leader-election` every second: standby -> try the lock; leader -> check the lock is still
  held (step down if not) and record liveness.
- `timeout-sweep` every CLUSTERMON_SWEEP_INTERVAL_SECONDS: `emit_timeouts`.
- `projection-catch-up` every second: `ProjectionRunner.catch_up`.
- `snapshot` every minute: `take_snapshot` (it decides itself whether a snapshot is due; the
  cadence is the read model's business).
- `reports` every minute: `run_due_reports`.
- `retention` daily (and at start) when CLUSTERMON_RETENTION_DAYS is set: `run_retention`.
- `notify-follow` every second: `NotifyFollower.catch_up` (the log's transitions into
  delivery rows, checkpointed); `notify-send` every second: `Sender.send_due` (pending rows
  to their channels). A takeover continues from the follower's checkpoint and the pending rows.
- `collect` every second: hand the targets of the index to the /health poller
  (collector/poller.py) and keep it polling; it polls on a loop of its own, so a takeover
  resumes polling within about two seconds (this job's period plus the election's) and a
  step-down (or a lost lock) stops it at once.
Only the leader runs sweep, catch-up, snapshot, reports, notifications and collection.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from collector.poller import CA_BUNDLE_ENV, Poller
from eventstore.clock import Clock
from eventstore.commands import ClusterCommands
from eventstore.db import unavailable_reason
from eventstore.store import EventStore
from notify.follower import NotifyFollower
from notify.sender import Sender
from projections.readmodel.runner import ProjectionRunner
from projections.readmodel.snapshots import take_snapshot
from scheduler import metrics
from scheduler.deadlines import DeadlineIndex
from scheduler.gaps import LIVENESS_EVERY, record_liveness, resume_after_gap
from scheduler.leader import LeaderLock, leader_lock_for
from scheduler.memory import release_free_memory
from scheduler.reports_job import run_due_reports
from scheduler.retention_job import EVERY_SECONDS as RETENTION_EVERY_SECONDS
from scheduler.retention_job import RetentionPolicy, run_retention
from scheduler.sweep import default_detector, emit_timeouts

if TYPE_CHECKING:
    from domain.events import MonitorResumed
    from domain.state import ClusterState

log = logging.getLogger("clustermon.scheduler")

ELECTION_INTERVAL_SECONDS = 1.0


class SchedulerService:
    def __init__(
        self,
        store: EventStore,
        clock: Clock,
        *,
        sweep_interval_seconds: float = 1.0,
        detector: str | None = None,
        lock: LeaderLock | None = None,
        collector: Poller | None = None,
        secret_key: str | None = None,
        retention: RetentionPolicy | None = None,
    ):
        self.store = store
        self.retention = retention  # None: CLUSTERMON_RETENTION_DAYS unset, the log keeps all
        self.clock = clock
        self.sweep_interval_seconds = sweep_interval_seconds
        self.detector = detector or default_detector()
        self.lock = lock if lock is not None else leader_lock_for(store.engine)
        self.index = DeadlineIndex.from_latest_snapshot(store)
        self.leading_since: datetime | None = None
        self._liveness_at: datetime | None = None
        self._mutex = threading.RLock()
        self._notify_lock = threading.Lock()
        self._projection_runner: ProjectionRunner | None = None
        self.notify_follower = NotifyFollower(store, clock)
        # Without the key no channel URL can be opened: nothing is sent (the rows wait).
        self.sender = Sender(store.engine, secret_key, clock) if secret_key else None
        # Built now so that a bad CLUSTERMON_COLLECTOR_CA_BUNDLE stops the start, loudly.
        self.collector = collector or Poller(
            _CountedCommands(store), clock, ca_bundle=os.environ.get(CA_BUNDLE_ENV) or None
        )
        # Told once, in plain words, whether this process leads or stands by (cli/scheduler.py)
        self.announce: Callable[[str], None] | None = None

    @property
    def leading(self) -> bool:
        return self.leading_since is not None

    # --- election ---------------------------------------------------------------------------

    def elect(self) -> bool:
        """Standby: follow the log and try to take the lock. Leader: verify the lock (step down
        if its connection is gone) and record liveness. Returns whether this process leads."""
        with self._mutex:
            if self.leading:
                if not self.lock.still_held():
                    log.warning("%s: lost the leader lock, standing by", self.detector)
                    self.leading_since = None
                    metrics.LEADING.set(0)
                    self.collector.stop(timeout=2.0)
                    return False
                self._record_liveness()
                return True
            self.index.follow(self.store)
            if not self.lock.try_acquire():
                self._tell(
                    f"scheduler {self.detector}: standing by: another scheduler is leading;"
                    " this one takes over if it stops"
                )
                return False
            self._take_over()
            return True

    def _take_over(self) -> None:
        now = self.clock()
        self.index.follow(self.store)
        state = self.index.state
        gap = resume_after_gap(
            self.store,
            now,
            config=state.configuration,
            sweep_interval_seconds=self.sweep_interval_seconds,
            detector=self.detector,
        )
        if gap is not None:
            event = cast("MonitorResumed", gap.event)  # what resume_after_gap appends
            log.warning(
                "%s: the monitor was down from %s to %s; every component gets one full"
                " timeout from now",
                self.detector,
                event.down_since,
                event.resumed_at,
            )
        self.leading_since = now
        metrics.LEADING.set(1)
        self._liveness_at = None
        self._record_liveness()
        if self.announce is None:  # a takeover, after the start was told
            log.info("%s: leading", self.detector)
        self._tell(
            f"scheduler {self.detector}: leading (sweeps timeouts, polls targets, takes"
            " snapshots, sends notifications)"
        )

    def _tell(self, text: str) -> None:
        """Say `text` through `announce`, once: the first election's outcome."""
        announce, self.announce = self.announce, None
        if announce is not None:
            announce(text)

    def _record_liveness(self) -> None:
        now = self.clock()
        if self._liveness_at is None or now - self._liveness_at >= LIVENESS_EVERY:
            record_liveness(self.store.engine, self.detector, self.leading_since or now, now)
            self._liveness_at = now

    def step_down(self, timeout: float = -1) -> None:
        """Give up the lead (and the lock). With a `timeout`, do not wait longer than that for
        a running job: on the way out the lock must go even if a long job is mid-way."""
        acquired = self._mutex.acquire(timeout=timeout)
        try:
            self.leading_since = None
            metrics.LEADING.set(0)
            self.collector.stop(timeout=2.0)
            self.lock.release()
        finally:
            if acquired:
                self._mutex.release()

    # --- jobs (one line each) ---------------------------------------------------------------

    def election_job(self) -> None:
        self.elect()

    def sweep_job(self) -> None:
        with self._mutex:  # the index is not shared with a concurrent election's follow
            if not self.elect():
                return
            with metrics.SWEEP_SECONDS.time():
                emitted = emit_timeouts(
                    self.store, self.clock(), index=self.index, detector=self.detector
                )
            metrics.count_emitted(emitted, "sweep")
        if emitted:  # tell people now, not at the next tick of the notify jobs
            self._notify()

    def projection_job(self) -> None:
        if self.elect():
            self._runner().catch_up()

    def snapshot_job(self) -> None:
        if self.elect():
            take_snapshot(self.store)
        # The minute's biggest churn just ended: hand glibc's free pages back, or RSS creeps
        # up (BENCHMARKS.md, "Capacity of one box"; scheduler/memory.py).
        release_free_memory()

    def reports_job(self) -> None:
        if self.elect():
            run_due_reports(self.store, self.clock())

    def retention_job(self) -> None:
        if self.retention is not None and self.elect():
            run_retention(self.store, self.clock(), self.retention)

    def notify_follow_job(self) -> None:
        if self.elect():
            self._notify()

    def _notify(self) -> None:
        """Follow the log into deliveries and, if it moved, send what is due at once: expiry to
        message is then one sweep plus a delivery, not three one-second ticks in a row
        (BENCHMARKS.md, Notifications). One follower at a time: its memory is not shared."""
        with self._notify_lock:
            moved = self.notify_follower.catch_up()
        if moved and self.sender is not None:
            self.sender.send_due()  # the sender's claim is a compare-and-set: safe beside its job

    def notify_send_job(self) -> None:
        if self.elect() and self.sender is not None:
            self.sender.send_due()

    def collect_job(self) -> None:
        with self._mutex:  # the index is not shared with a concurrent election's follow
            if self.elect():
                self.collector.lead(self._followed())

    def _followed(self) -> ClusterState:
        """The index's state, caught up with the log (targets added or changed a moment ago)."""
        self.index.follow(self.store)
        return self.index.state

    def _runner(self):
        if self._projection_runner is None:
            self._projection_runner = ProjectionRunner(self.store)
        return self._projection_runner


class _CountedCommands(ClusterCommands):
    """The poller's commands: the recoveries its heartbeats imply are counted for /metrics."""

    def record_heartbeats(self, beats, **options):
        result = super().record_heartbeats(beats, **options)
        metrics.count_emitted(result.recorded, "collector")
        return result


class DatabaseOutage:
    """While the database is away every job fails every time it runs, and APScheduler logs
    each failure with its traceback: a page a second of the same news. Instead, one line when
    it goes away and one when it is back; the jobs retry on their own schedule meanwhile. Any
    other error is still raised, for APScheduler to log."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic):
        self.monotonic = monotonic
        self.since: float | None = None
        self._lock = threading.Lock()

    def guard(self, job: Callable[[], None]) -> Callable[[], None]:
        @functools.wraps(job)
        def run() -> None:
            try:
                job()
            except Exception as exc:
                reason = unavailable_reason(exc)
                if reason is None:
                    raise
                self._went_away(reason)
            else:
                self._came_back()

        return run

    def _went_away(self, reason: str) -> None:
        with self._lock:
            if self.since is None:
                self.since = self.monotonic()
                log.warning("%s: the jobs wait for it and retry on their schedule", reason)

    def _came_back(self) -> None:
        if self.since is None:  # the usual case, without taking the lock
            return
        with self._lock:
            if self.since is not None:
                log.warning(
                    "the database answers again (after %.0f s)", self.monotonic() - self.since
                )
                self.since = None


def build_scheduler(service: SchedulerService, scheduler=None):
    """Register the jobs on `scheduler` (default: a new BlockingScheduler) and return it."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    if scheduler is None:
        scheduler = BlockingScheduler(timezone=UTC)
    guard = DatabaseOutage().guard
    interval = service.sweep_interval_seconds
    start = datetime.now(UTC)
    # (job, id, period in seconds, misfire grace in seconds, run at once on start)
    jobs = [
        (service.election_job, "leader-election", ELECTION_INTERVAL_SECONDS, 5, True),
        # A late sweep is still useful (it catches everything that expired meanwhile), so allow
        # lateness well beyond one interval rather than dropping the run.
        (service.sweep_job, "timeout-sweep", interval, max(5, int(10 * interval)), True),
        (service.projection_job, "projection-catch-up", 1, 5, False),
        (service.snapshot_job, "snapshot", 60, 300, False),
        (service.collect_job, "collect", 1, 5, True),
        (service.notify_follow_job, "notify-follow", 1, 5, False),
        (service.notify_send_job, "notify-send", 1, 5, False),
        # run_due_reports is idempotent and cheap when nothing is due.
        (service.reports_job, "reports", 60, 300, False),
    ]
    if service.retention is not None:
        # Daily, and once at start: a scheduler restarted more often than daily still archives.
        # Only when asked for: a job that does nothing would pass for the database answering
        # again while it is away (DatabaseOutage).
        jobs.append((service.retention_job, "retention", RETENTION_EVERY_SECONDS, 3600, True))
    for job, job_id, seconds, grace, at_once in jobs:
        scheduler.add_job(
            guard(job),
            "interval",
            seconds=seconds,
            id=job_id,
            misfire_grace_time=grace,
            coalesce=True,
            max_instances=1,
            replace_existing=True,
            **({"next_run_time": start} if at_once else {}),
        )
    return scheduler


def run_forever(service: SchedulerService, *, exit_with_parent: int | None = None) -> None:
    """Run the jobs in this process until SIGTERM/SIGINT (or until the parent process
    `exit_with_parent` is gone); the leader lock is released on the way out. Jobs still
    running keep their threads: the caller should end the process (`os._exit`) rather than
    wait for them (every job's work is transactional, so stopping mid-way loses nothing)."""
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    scheduler = build_scheduler(service)
    if exit_with_parent is not None:
        scheduler.add_job(
            _exit_if_orphaned,
            "interval",
            seconds=1,
            args=[exit_with_parent],
            id="exit-with-parent",
            coalesce=True,
            max_instances=1,
        )

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        if scheduler.running:
            scheduler.shutdown(wait=False)
        service.step_down(timeout=2)


def _exit_if_orphaned(parent_pid: int) -> None:
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)
