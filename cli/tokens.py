"""`clustermon token create` / `token revoke`."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from api import tokens
from api.services import services


@click.group("token", help="API tokens (only their SHA-256 hash is stored).")
def token_group() -> None:
    pass


@token_group.command("create", help="Print a new token alone on stdout; it is shown only once.")
@click.option("--role", type=click.Choice(tokens.ROLES), required=True)
@click.option(
    "--name",
    required=True,
    callback=lambda _ctx, _param, value: _actor_name(value),
    help="who uses it; recorded as the actor of its events",
)
@with_appcontext
def token_create(role: str, name: str) -> None:
    svc = services(current_app)
    click.echo(tokens.create_token(svc.engine, svc.clock, name, role))


def _actor_name(value: str) -> str:
    if not value.strip():
        raise click.BadParameter("must name who uses the token (it is recorded as the actor)")
    return value


@token_group.command("revoke", help="Revoke every token with this name.")
@click.option("--name", required=True)
@with_appcontext
def token_revoke(name: str) -> None:
    svc = services(current_app)
    count = tokens.revoke_tokens(svc.engine, svc.clock, name)
    click.echo(f"revoked {count} token(s) named {name!r}", err=True)
