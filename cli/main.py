"""The `clustermon` command line and the wiring (the composition root): also reachable as
`flask --app wsgi …` and `python -m cli …`."""

from __future__ import annotations

import functools
import os
import sys

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import FlaskGroup

from api.app import create_app as api_create_app
from cli import archive, audit, readmodel, scheduler
from cli.db import db_group
from cli.serve import run, serve
from cli.simulate import simulate
from cli.tokens import token_group
from collector.agent.cli import agent


def register_commands(app: Flask) -> None:
    """Every clustermon command on the app's command line (once per app)."""
    for command in [
        db_group,
        token_group,
        serve,
        run,
        simulate,
        agent,  # listed here; cli/entry.py starts it without the server
        *readmodel.commands,
        *scheduler.commands,
        *audit.commands,
        *archive.commands,
    ]:
        _explain_missing_tables(command)
        app.cli.add_command(command)


MIGRATE_FIRST = "the database has no clustermon tables: run `clustermon db upgrade`"


def _explain_missing_tables(command: click.Command) -> None:
    """A command run on a database never migrated says so in one line (as `clustermon` or as
    `flask --app wsgi`), instead of a SQLAlchemy traceback. Once per command: the app factory
    runs many times in one process."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _explain_missing_tables(sub)
        return
    callback = command.callback
    if callback is None or getattr(callback, "explains_missing_tables", False):
        return

    @functools.wraps(callback)
    def explained(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except sa.exc.DBAPIError as exc:
            if _missing_table(exc):
                raise click.ClickException(MIGRATE_FIRST) from None
            raise

    # A marker attribute on our own wrapper function.
    explained.explains_missing_tables = True  # type: ignore[attr-defined]
    command.callback = explained


def create_app(test_config: dict | None = None) -> Flask:
    """The HTTP app with its command line: what `clustermon` and `flask --app wsgi` load."""
    app = api_create_app(test_config)
    register_commands(app)
    return app


MADE_METRICS_DIR = "CLUSTERMON_MADE_METRICS_DIR"


def main() -> None:
    if {"serve", "run"} & set(sys.argv[1:2]) and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # gunicorn workers are separate processes: /metrics adds up what they write here.
        # Set before anything imports prometheus_client, which reads it once.
        import tempfile

        folder = tempfile.mkdtemp(prefix="clustermon-metrics-")
        # Marked as ours: gunicorn removes it on exit (api/gunicorn_config.py).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[MADE_METRICS_DIR] = folder
    FlaskGroup(
        name="clustermon",
        create_app=create_app,
        add_default_commands=False,
        add_version_option=False,
        load_dotenv=False,
        set_debug_flag=False,
    )(prog_name="clustermon")


def _missing_table(exc: sa.exc.DBAPIError) -> bool:
    """A database never migrated (PostgreSQL's undefined_table, SQLite's "no such table")."""
    return getattr(exc.orig, "sqlstate", None) == "42P01" or "no such table" in str(exc.orig)
