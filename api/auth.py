"""Bearer-token authentication and role checks for the API."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import wraps

from flask import current_app, g, request

from api.problems import Problem
from api.services import services
from api.tokens import Principal, hash_token, redeem_ticket

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="clustermon"'}


def current_principal(ticket: bool = False):
    """The principal of the request's bearer token; with `ticket`, a request without an
    Authorization header may name a stream ticket instead (`?ticket=`, api/stream_tickets.py).
    Sets `g.token_hash`: the SHA-256 of the token it acts as."""
    header = request.headers.get("Authorization", "")
    if ticket and not header and "ticket" in request.args:
        return _ticket_principal(request.args["ticket"])
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "a bearer token is required", kind="unauthorized", headers=CHALLENGE)
    g.token_hash = hash_token(token.strip())
    principal = current_app.extensions["clustermon_tokens"].verify_hash(g.token_hash)
    if principal is None:
        raise Problem(
            401, "the token is not known or was revoked", kind="unauthorized", headers=CHALLENGE
        )
    return principal


def _ticket_principal(ticket: str) -> Principal:
    """The principal of the token a stream ticket was issued to; the ticket is spent."""
    svc = services(current_app)
    digest = redeem_ticket(svc.engine, svc.clock, ticket) if len(ticket) <= 200 else None
    principal = None
    if digest is not None:
        principal = current_app.extensions["clustermon_tokens"].verify_hash(digest)
    if principal is None:
        raise Problem(
            401,
            "the ticket is not known, was used already or expired (a ticket opens one stream,"
            " within 60 s): ask POST /api/v1/events/stream/tickets for a new one",
            kind="unauthorized",
            headers=CHALLENGE,
        )
    g.token_hash = digest
    return principal


def require(permission: str, *, ticket: bool = False):
    """Decorator: the request needs a token whose role grants `permission`. Put it right under
    `@blp.route`: what it wraps (query arguments included) runs only once the token passed, so
    a request without the right token gets its 401/403 whatever else is wrong with it.
    `ticket`: a stream ticket (`?ticket=`, no Authorization header) may stand for the token."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            principal = current_principal(ticket)
            if not principal.may(permission):
                raise Problem(
                    403,
                    f"the {principal.role} role may not do this (needs {permission})",
                    kind="forbidden",
                )
            g.principal = principal
            return view(*args, **kwargs)

        return wrapper

    return decorate


def require_servers(principal: Principal, servers: Iterable[str], doing: str) -> None:
    """A 403 problem naming the servers a bound token may not speak for, if `servers` names
    any (an unbound token speaks for every server). `doing`: what was refused, for the detail."""
    outside = principal.outside(servers)
    if outside:
        raise Problem(
            403,
            f"this token is bound to {_listed(principal.servers or ())} and may not {doing} for"
            f" {_listed(outside)}; nothing was recorded",
            kind="forbidden",
        )


def _listed(names: Sequence[str], most: int = 20) -> str:
    shown = ", ".join(names[:most])
    return shown if len(names) <= most else f"{shown} and {len(names) - most} more"
