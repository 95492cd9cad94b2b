"""CLI commands of the audit side: `audit`, `what-if`, `report`. Registered by
cli/main.py."""

from __future__ import annotations

import re
import sys
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import click
import orjson
from flask import current_app
from flask.cli import with_appcontext

from cli.audit_archives import archive_option, audit_store
from domain.durations import format_duration

commands: list[click.Command] = []

_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """'120s', '2m', '5min', '1h', '1d' or plain seconds -> seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*(s|sec|m|min|h|d)?\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 120s, 5min, 1h")
    seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not 1 <= seconds <= 30 * 86400:
        raise ValueError("a timeout must be between 1 second and 30 days")
    return seconds


class Duration(click.ParamType):
    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Time(click.ParamType):
    """ISO-8601 (a time without a zone is UTC) or 'now'."""

    name = "time"

    def convert(self, value, param, ctx):
        if isinstance(value, datetime):
            return value
        if value == "now":
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 time (e.g. 2026-11-27T10:00:00Z)", param, ctx)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _services():
    from api.services import services

    return services(current_app)


def _period(since, until) -> tuple[datetime, datetime]:
    now = _services().clock()
    until = min(until or now, now)
    since = since or until - timedelta(days=1)
    if since >= until:
        raise click.BadParameter("since must be before until (and until not after now)")
    return since, until


@contextmanager
def _progress(label: str):
    """A progress counter on a terminal's stderr; silent otherwise."""
    store = _services().store
    total = store.head_position()
    if not sys.stderr.isatty() or total == 0:
        yield None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def _fmt_time(value) -> str:
    if value is None:
        return "ongoing"
    return value.strftime("%Y-%m-%d %H:%M:%S")


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    if not cells:
        lines.append("(none)")
    return "\n".join(line.rstrip() for line in lines)


def _episode_rows(episodes, horizon) -> list[list]:
    return [
        [
            f"{e.server}/{e.component}",
            e.cause + (" (inferred)" if e.inferred else ""),
            _fmt_time(e.start),
            _fmt_time(e.end),
            format_duration(e.seconds(horizon)),
            e.detector or "-",
            e.timeout_seconds or "-",
            e.configuration_version,
            ",".join(map(str, sorted(set(e.positions)))),
        ]
        for e in episodes
    ]


EPISODE_HEADERS = [
    "component",
    "cause",
    "start",
    "end",
    "duration",
    "detector",
    "timeout_s",
    "config_v",
    "positions",
]


@click.command("audit", help="Print outage episodes, failovers and cluster outages of a period.")
@click.option("--since", type=Time(), default=None, help="start (ISO-8601); default until - 1 day")
@click.option("--until", type=Time(), default=None, help="end (ISO-8601); default now")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of tables")
@archive_option
@with_appcontext
def audit(since, until, as_json: bool, archives) -> None:
    from projections.audit import episode_pass, whatif

    since, until = _period(since, until)
    with (
        audit_store(_services().store, archives, until) as store,
        _progress("folding the log") as progress,
    ):
        result = episode_pass.build(store, until, since=since, progress=progress)
    if as_json:
        click.echo(orjson.dumps(whatif.listing(result, since, until)).decode())
        return
    horizon = result.horizon
    click.echo(
        f"period {since.isoformat()} to {until.isoformat()} (log position {result.position})"
    )
    click.echo("\nOutage episodes")
    click.echo(table(EPISODE_HEADERS, _episode_rows(result.episodes_in(since, until), horizon)))
    click.echo("\nFailovers (a Service component timed out, another one stayed current)")
    click.echo(
        table(
            ["at", "from", "recovered", "outage", "taken over by", "positions"],
            [
                [
                    _fmt_time(f.episode.start),
                    f.episode.server,
                    _fmt_time(f.episode.end),
                    format_duration(f.episode.seconds(horizon)),
                    ",".join(server for server, _ in f.taken_over_by),
                    ",".join(map(str, sorted(set(f.episode.positions)))),
                ]
                for f in result.failovers_in(since, until)
            ],
        )
    )
    click.echo("\nCluster outages (no current Service component)")
    click.echo(
        table(
            ["start", "end", "duration", "components"],
            [
                [
                    _fmt_time(o.start),
                    _fmt_time(o.end),
                    format_duration(o.seconds(horizon)),
                    ",".join(f"{e.server}/{e.component}" for e in o.episodes),
                ]
                for o in result.cluster_outages_in(since, until)
            ],
        )
    )


@click.command(
    "what-if",
    help="Replay the real heartbeats under another timeout and print the episodes that would"
    " have happened beside the ones that did.",
)
@click.option("--stale-timeout", type=Duration(), default=None, help="Service timeout, e.g. 120s")
@click.option("--web-timeout", type=Duration(), default=None, help="Web window, e.g. 12h")
@click.option("--since", type=Time(), default=None, help="start (ISO-8601); default until - 1 day")
@click.option("--until", type=Time(), default=None, help="end (ISO-8601); default now")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of tables")
@archive_option
@with_appcontext
def what_if(stale_timeout, web_timeout, since, until, as_json: bool, archives) -> None:
    from projections.audit import whatif

    overrides = {}
    if stale_timeout is not None:
        overrides["stale_timeout_seconds"] = stale_timeout
    if web_timeout is not None:
        overrides["web_stale_timeout_seconds"] = web_timeout
    if not overrides:
        raise click.UsageError("give --stale-timeout and/or --web-timeout")
    since, until = _period(since, until)
    with (
        audit_store(_services().store, archives, until) as store,
        _progress("replaying the log") as progress,
    ):
        actual, simulated = whatif.replay(store, until, overrides, progress=progress)
    if as_json:
        click.echo(orjson.dumps(whatif.compare(actual, simulated, since, until)).decode())
        return
    report = whatif.compare(actual, simulated, since, until)
    settings = report["settings"]
    click.echo(
        f"period {since.isoformat()} to {until.isoformat()} (log position {actual.position})"
    )
    click.echo(f"actual settings {settings['actual']}; what-if {settings['what_if']}\n")
    summary = report["summary"]
    click.echo(
        table(
            ["", "episodes", "downtime", "failovers", "cluster outages", "cluster downtime"],
            [
                [
                    name,
                    s["episodes"],
                    format_duration(s["outage_seconds"]),
                    s["failovers"],
                    s["cluster_outages"],
                    format_duration(s["cluster_outage_seconds"]),
                ]
                for name, s in (("actual", summary["actual"]), ("what-if", summary["what_if"]))
            ],
        )
    )
    click.echo("\nPer component")
    click.echo(
        table(
            ["component", "actual", "actual downtime", "what-if", "what-if downtime"],
            [
                [
                    f"{c['server']}/{c['component']}",
                    c["actual"]["episodes"],
                    format_duration(c["actual"]["outage_seconds"]),
                    c["what_if"]["episodes"],
                    format_duration(c["what_if"]["outage_seconds"]),
                ]
                for c in report["components"]
            ],
        )
    )
    for title, result in (("Actual episodes", actual), ("What-if episodes", simulated)):
        click.echo(f"\n{title}")
        rows = _episode_rows(result.episodes_in(since, until), until)
        click.echo(table(EPISODE_HEADERS, rows))


@click.command("report", help="Compute an availability report for a period from the log.")
@click.option("--since", type=Time(), default=None, help="start (ISO-8601); default until - 1 day")
@click.option("--until", type=Time(), default=None, help="end (ISO-8601); default now")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv", "html"]),
    default="table",
    show_default=True,
)
@click.option("--save", is_flag=True, help="also store it (as a manual report)")
@archive_option
@with_appcontext
def report(since, until, fmt: str, save: bool, archives) -> None:
    from projections.audit import report_store, reports

    if save and archives:
        raise click.UsageError("--save stores reports of the live log only: drop --archive")
    since, until = _period(since, until)
    with (
        audit_store(_services().store, archives, until) as store,
        _progress("computing the report") as progress,
    ):
        if save:
            stored = report_store.compute_and_store(
                store, since, until, requested_by="cli", progress=progress
            )
            assert stored is not None  # only scheduled kinds can find their period stored
        else:
            position = store.head_position()
            stored = {
                "id": None,
                "kind": "manual",
                "period": {"since": since, "until": until},
                "position": position,
                "computed_at": store.clock(),
                "data": orjson.loads(
                    orjson.dumps(
                        reports.compute(store, since, until, up_to=position, progress=progress)
                    )
                ),
            }
    if fmt == "json":
        click.echo(orjson.dumps(stored).decode())
    elif fmt == "csv":
        click.echo(reports.to_csv(stored), nl=False)
    elif fmt == "html":
        click.echo(reports.to_html(stored))
    else:
        _print_report(stored)
    if save:
        click.echo(f"stored as report {stored['id']}", err=True)


def _print_report(stored: dict) -> None:
    data = stored["data"]
    click.echo(
        f"report {data['period']['since']} to {data['period']['until']}"
        f" (log position {stored['position']})\n"
    )
    click.echo(
        table(
            ["component", "uptime %", "outages", "downtime", "MTTR", "longest", "failovers"],
            [
                [
                    f"{c['server']}/{c['component']}",
                    "-" if c["uptime_percent"] is None else f"{c['uptime_percent']:.3f}",
                    c["outages"],
                    format_duration(c["outage_seconds"]),
                    format_duration(c["mttr_seconds"]),
                    format_duration(c["longest_outage_seconds"]),
                    c["failovers"],
                ]
                for c in data["components"]
            ],
        )
    )
    cluster = data["cluster"]
    click.echo(
        f"\ncluster: {cluster['failovers']} failover(s), {cluster['cluster_outages']} cluster"
        f" outage(s) totalling {format_duration(cluster['cluster_outage_seconds'])}"
    )
    if data["servers"]:
        click.echo("\nOut of sync")
        click.echo(
            table(
                ["server", "version periods", "version time", "key periods", "key time"],
                [
                    [
                        s["server"],
                        s["version_out_of_sync_periods"],
                        format_duration(s["version_out_of_sync_seconds"]),
                        s["key_out_of_sync_periods"],
                        format_duration(s["key_out_of_sync_seconds"]),
                    ]
                    for s in data["servers"]
                ],
            )
        )


commands.extend([audit, what_if, report])
