"""`--archive DIR` for `audit`, `what-if` and `report`: the period is read from the archives
given and the live log together (retention/combined.py), in a scratch SQLite database that is
removed afterwards."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import click

from eventstore import EventStore, create_engine, open_store

archive_option = click.option(
    "--archive",
    "archives",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="also read the events archived in DIR (repeatable; see `clustermon archive`)",
)


@contextmanager
def audit_store(
    live: EventStore, archives: Sequence[Path], until: datetime
) -> Iterator[EventStore]:
    """`live` itself without archives; else a store over the archives and the live events up
    to `until`, copied into a scratch database."""
    if not archives:
        yield live
        return
    import migrations
    from retention.combined import ArchiveGap, combine
    from retention.verify import ArchiveDamaged

    with tempfile.TemporaryDirectory(prefix="clustermon-audit-") as folder:
        url = f"sqlite:///{Path(folder) / 'audit.db'}"
        migrations.upgrade(url)
        engine = create_engine(url)
        try:
            try:
                copied = combine(live, archives, engine, until)
            except (ArchiveDamaged, ArchiveGap) as exc:
                raise click.ClickException(str(exc)) from None
            click.echo(f"reading {copied:,} archived and live events", err=True)
            yield open_store(engine, live.clock)
        finally:
            engine.dispose()
