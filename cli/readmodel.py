"""CLI commands of the projections side, registered by cli/main.py."""

from __future__ import annotations

import sys
from datetime import datetime

import click
import orjson
from flask import current_app
from flask.cli import with_appcontext


def _services():
    from api.services import services

    return services(current_app)


def _progressbar(store, label: str):
    return click.progressbar(length=max(store.head_position(), 1), label=label, file=sys.stderr)


@click.command("rebuild", help="Re-fold the log from zero into the read tables and swap them in.")
@with_appcontext
def rebuild_command() -> None:
    from projections.readmodel.rebuild import rebuild

    store = _services().store
    with _progressbar(store, "rebuilding") as bar:
        folded = rebuild(store, progress=bar.update)
    click.echo(f"rebuilt the cluster view from {folded} events", err=True)


@click.command("replay", help="Re-fold the log from zero without writing; print what it found.")
@with_appcontext
def replay_command() -> None:
    from projections.readmodel.rebuild import replay

    store = _services().store
    with _progressbar(store, "replaying") as bar:
        report = replay(store, progress=bar.update)
    click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())


def _parse_time(_ctx, _param, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO-8601 time: {value!r}") from exc


@click.command("at", help="Print the cluster view as it was at TIME (ISO-8601; UTC if no zone).")
@click.argument("time", required=False, callback=_parse_time)
@click.option("--position", type=int, default=None, help="the view just after this position")
@with_appcontext
def at_command(time: datetime | None, position: int | None) -> None:
    from projections.readmodel.timetravel import view_at

    if time is None and position is None:
        raise click.UsageError("give TIME or --position")
    try:
        view = view_at(_services().store, at=time, position=position)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(orjson.dumps(view, option=orjson.OPT_INDENT_2).decode())


@click.command("snapshot", help="Write the snapshots that are due (with --force: at the head).")
@click.option("--force", is_flag=True, help="snapshot the head even if none is due")
@click.option("--every-events", type=int, default=None, help="cadence in events [1000]")
@with_appcontext
def snapshot_command(force: bool, every_events: int | None) -> None:
    from projections.readmodel import snapshots

    store = _services().store
    kwargs = {"every_events": every_events} if every_events else {}
    with _progressbar(store, "snapshotting") as bar:
        position = snapshots.take_snapshot(store, force=force, progress=bar.update, **kwargs)
    if position is None:
        click.echo("no snapshot due", err=True)
    else:
        click.echo(f"snapshot at position {position}", err=True)


@click.command("project", help="Catch the read tables up with the log once; print the lag.")
@with_appcontext
def project_command() -> None:
    from projections.readmodel.runner import ProjectionRunner

    runner = ProjectionRunner(_services().store)
    applied = runner.catch_up()
    click.echo(orjson.dumps({"applied": applied, "lag": runner.lag()}).decode())


commands: list[click.Command] = [
    rebuild_command,
    replay_command,
    at_command,
    snapshot_command,
    project_command,
]
