"""The scheduled reports job: store the daily and weekly reports of the periods just ended.

Wiring (for scheduler/service.py, at the place marked for issue 6)::

    scheduler.add_job(
        service.reports_job, "interval", minutes=1, id="reports",
        misfire_grace_time=300, **common,
    )
    # with SchedulerService.reports_job = lambda self: self.elect() and
    #     run_due_reports(self.store, self.clock())

`run_due_reports(store, now)` is idempotent and cheap when nothing is due (one indexed lookup
per schedule), so calling it every minute is fine; it computes a report only for a period that
has ended and is not stored yet. Two schedulers racing store it once (unique schedule key).

Schedules are cron expressions (standard 5-field crontab, UTC, 0 or 7 = Sunday):
- daily:  CLUSTERMON_REPORT_DAILY_CRON,  default "0 0 * * *"  (midnight to midnight UTC)
- weekly: CLUSTERMON_REPORT_WEEKLY_CRON, default "0 0 * * 1"  (Monday to Monday UTC)
A report covers the interval between the last two fire times at or before `now`. Only the
latest ended period of each schedule is computed (a scheduler that was down for days does not
back-fill older periods; `POST /api/v1/reports` does that by hand). Periods that end before the
first event of the log are skipped.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta

import orjson
from apscheduler.triggers.cron import CronTrigger

from eventstore.db import write_connection
from eventstore.store import EventStore
from notify import messages
from notify.follower import delivery_id, insert_deliveries
from projections.audit import report_store
from projections.audit.reports import to_html
from projections.readmodel.current import current_state

log = logging.getLogger("clustermon.reports")

DEFAULT_SCHEDULES = {"daily": "0 0 * * *", "weekly": "0 0 * * 1"}
ENVIRONMENT = {"daily": "CLUSTERMON_REPORT_DAILY_CRON", "weekly": "CLUSTERMON_REPORT_WEEKLY_CRON"}
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LOOKBACKS = (timedelta(hours=2), timedelta(days=2), timedelta(days=15), timedelta(days=400))


def schedules() -> dict[str, str]:
    """The cron expression of each report kind (environment, else the default)."""
    return {
        kind: os.environ.get(ENVIRONMENT[kind]) or cron for kind, cron in DEFAULT_SCHEDULES.items()
    }


def cron_trigger(expression: str) -> CronTrigger:
    """A standard crontab line as an APScheduler trigger. APScheduler 3 numbers weekdays from
    Monday = 0, crontab from Sunday = 0, so numeric weekdays are translated to names."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"a cron expression has 5 fields, got {expression!r}")
    minute, hour, day, month, day_of_week = fields
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_weekdays(day_of_week),
        timezone=UTC,
    )


def _weekdays(field: str) -> str:
    parts = []
    for part in field.split(","):
        span, slash, step = part.partition("/")
        names = "-".join(_DAYS[int(p)] if p.isdigit() else p for p in span.split("-"))
        parts.append(names + slash + step)
    return ",".join(parts)


def last_period(expression: str, now: datetime) -> tuple[datetime, datetime] | None:
    """[previous fire, last fire] at or before `now`; None if the cron fires too rarely."""
    trigger = cron_trigger(expression)
    for lookback in _LOOKBACKS:
        fires, at = [], now - lookback
        while True:
            fire = trigger.get_next_fire_time(None, at)
            if fire is None or fire > now:
                break
            fires.append(fire)
            at = fire + timedelta(microseconds=1)
        if len(fires) >= 2:
            return fires[-2], fires[-1]
    return None


def run_due_reports(store: EventStore, now: datetime) -> list[dict]:
    """Compute and store the report of each schedule's latest ended period, if not stored yet.
    Returns the reports stored by this call (usually none)."""
    stored = []
    first = None
    for kind, expression in schedules().items():
        period = last_period(expression, now)
        if period is None or report_store.has_schedule(store.engine, kind, period[0]):
            continue
        first = first or store.oldest_recorded_at()
        if first is None or period[1] <= first:
            continue
        report = report_store.compute_and_store(store, period[0], period[1], kind=kind)
        if report is not None:
            log.info("stored the %s report %s for %s to %s", kind, report["id"], *period)
            queue_report_deliveries(store, report, now)
            stored.append(report)
    return stored


def queue_report_deliveries(store: EventStore, report: dict, now: datetime) -> int:
    """A delivery of a stored scheduled report to every enabled channel on its trigger
    (`daily_report` / `weekly_report`), the HTML report as the mail body. Its id derives from
    the channel and the report, so queueing one report again adds nothing. Returns how many
    channels it was queued for."""
    trigger = f"{report['kind']}_report"
    channels = [
        c for c in current_state(store.engine).channels.values() if c.enabled and trigger in c.on
    ]
    if not channels:
        return 0
    period = report["period"]
    payload = messages.report(
        report["kind"],
        period["since"],
        period["until"],
        to_html(report),
        now,
        messages.public_url(),
    )
    body = orjson.dumps(payload).decode()
    rows = [
        {
            "id": delivery_id(channel.name, f"report {report['id']}", trigger),
            "channel": channel.name,
            "trigger": trigger,
            "server": None,
            "component": None,
            "source_position": report.get("position"),
            "state": "pending",
            "attempts": 0,
            "payload": body,
            "created_at": now,
            "next_attempt_at": now,
        }
        for channel in channels
    ]
    with write_connection(store.engine) as conn, conn.begin():
        insert_deliveries(conn, rows)
    return len(rows)
