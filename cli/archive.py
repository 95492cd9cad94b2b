"""CLI commands of retention: `archive --before TIME --to DIR`, `archive --verify DIR` and
`restore DIR` (retention/). Registered by cli/main.py."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from cli.audit import Time

_DIRECTORY = click.Path(file_okay=False, path_type=Path)


def _store():
    from api.services import services

    return services(current_app).store


@contextmanager
def _progress(label: str, length: int):
    """A progress bar on a terminal's stderr; silent otherwise."""
    if not sys.stderr.isatty() or length == 0:
        yield None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield bar.update


@click.command(
    "archive",
    help="Write every event recorded before TIME to DIR (gzip'd JSON Lines and manifest.json),"
    " snapshot the boundary, then delete those events from the database. With --verify DIR:"
    " check an archive against its manifest instead.",
)
@click.option("--before", type=Time(), default=None, help="ISO-8601 time (UTC if no zone)")
@click.option("--to", "to", type=_DIRECTORY, default=None, help="archive directory (created)")
@click.option("--verify", "verify_dir", type=_DIRECTORY, default=None, help="check DIR only")
@click.option("--events-per-file", type=click.IntRange(min=1), default=None, hidden=True)
@with_appcontext
def archive_command(before, to, verify_dir, events_per_file) -> None:
    if verify_dir is not None:
        if to is not None or before is not None:
            raise click.UsageError("--verify DIR takes no --before or --to")
        _verify(verify_dir)
        return
    if to is None:
        raise click.UsageError("give --before TIME --to DIR (or --verify DIR)")
    if before is None:
        raise click.UsageError("give --before TIME: events recorded before it are archived")
    from retention.archive import EVENTS_PER_FILE, ArchiveRefused, archive
    from retention.verify import ArchiveDamaged

    store = _store()
    try:
        with _progress("archiving", store.head_position()) as progress:
            result = archive(
                store,
                before,
                to,
                events_per_file=events_per_file or EVENTS_PER_FILE,
                progress=progress,
            )
    except (ArchiveRefused, ArchiveDamaged) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # the directory: not writable, a file in the way, a full disk
        raise click.ClickException(f"nothing deleted: {exc}") from None
    except _range_changed() as exc:
        raise click.ClickException(
            f"the log changed under the archive ({exc}); nothing was deleted: run it again"
        ) from None
    click.echo(result.describe())


def _range_changed() -> type[Exception]:
    from eventstore.retention import RangeChanged

    return RangeChanged


def _verify(directory: Path) -> None:
    from retention.verify import ArchiveDamaged, verify

    try:
        found = verify(directory)
    except ArchiveDamaged as exc:
        raise click.ClickException(f"the archive is damaged: {exc}") from None
    click.echo(f"{directory}: sound: {found.describe()}, {len(found.files)} file(s)")


@click.command(
    "restore",
    help="Load the archive in DIR back into the database (positions preserved): verified"
    " first; refused if any of its events is already in the log.",
)
@click.argument("directory", type=_DIRECTORY)
@with_appcontext
def restore_command(directory: Path) -> None:
    from eventstore.retention import RestoreOverlap
    from retention.restore import restore
    from retention.verify import ArchiveDamaged

    try:
        found, restored = restore(_store(), directory)
    except ArchiveDamaged as exc:
        raise click.ClickException(f"the archive is damaged, nothing restored: {exc}") from None
    except RestoreOverlap as exc:
        raise click.ClickException(f"nothing restored: {exc}") from None
    click.echo(f"restored {restored:,} events: {found.describe()} from {directory}")


commands: list[click.Command] = [archive_command, restore_command]
