"""`clustermon db upgrade` / `db downgrade`: the Alembic migrations."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

import migrations


@click.group("db", help="Database schema.")
def db_group() -> None:
    pass


@db_group.command("upgrade", help="Apply Alembic migrations to CLUSTERMON_DATABASE_URL.")
@click.option("--revision", default="head", show_default=True)
@with_appcontext
def db_upgrade(revision: str) -> None:
    migrations.upgrade(current_app.config["DATABASE_URL"], revision)
    click.echo(f"database at {revision}", err=True)


@db_group.command("downgrade", help="Revert migrations (default: to an empty database).")
@click.option("--revision", default="base", show_default=True)
@with_appcontext
def db_downgrade(revision: str) -> None:
    migrations.downgrade(current_app.config["DATABASE_URL"], revision)
    click.echo(f"database at {revision}", err=True)
