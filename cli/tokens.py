"""`clustermon token create` / `token list` / `token revoke`."""

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
@click.option(
    "--servers",
    metavar="NAMES",
    callback=lambda _ctx, _param, value: _binding(value),
    help="agent tokens only: the servers it may send heartbeats for, comma-separated names"
    " and/or shell-style patterns as Python's fnmatch reads them, case-sensitive (*: any"
    " characters, ?: one, [seq] / [!seq]: one of / none of), e.g. 'web01,web02' or 'web*'."
    " A batch naming any other server is refused whole (403). Default: every server.",
)
@with_appcontext
def token_create(role: str, name: str, servers: tuple[str, ...] | None) -> None:
    if servers is not None and role not in tokens.BINDABLE_ROLES:
        raise click.BadParameter(
            f"only agent tokens are bound to servers: a {role} acts on the whole cluster",
            param_hint="'--servers'",
        )
    svc = services(current_app)
    click.echo(tokens.create_token(svc.engine, svc.clock, name, role, servers))


def _actor_name(value: str) -> str:
    if not value.strip():
        raise click.BadParameter("must name who uses the token (it is recorded as the actor)")
    return value


def _binding(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    try:
        return tokens.parse_binding(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@token_group.command("list", help="Every token: name, role, servers it is bound to, state.")
@with_appcontext
def token_list() -> None:
    for info in tokens.list_tokens(services(current_app).engine):
        servers = ",".join(info.servers) if info.servers is not None else "(every server)"
        state = f"revoked {info.revoked_at:%Y-%m-%d %H:%M}" if info.revoked_at else "active"
        click.echo(
            f"{info.name}\t{info.role}\tservers={servers}\t"
            f"created {info.created_at:%Y-%m-%d %H:%M}\t{state}"
        )


@token_group.command("revoke", help="Revoke every token with this name.")
@click.option("--name", required=True)
@with_appcontext
def token_revoke(name: str) -> None:
    svc = services(current_app)
    count = tokens.revoke_tokens(svc.engine, svc.clock, name)
    click.echo(f"revoked {count} token(s) named {name!r}", err=True)
