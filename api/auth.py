"""Bearer-token authentication and role checks for the API."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import wraps

from flask import current_app, g, request

from api.problems import Problem
from api.tokens import Principal

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="clustermon"'}


def current_principal():
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "a bearer token is required", kind="unauthorized", headers=CHALLENGE)
    principal = current_app.extensions["clustermon_tokens"].verify(token.strip())
    if principal is None:
        raise Problem(
            401, "the token is not known or was revoked", kind="unauthorized", headers=CHALLENGE
        )
    return principal


def require(permission: str):
    """Decorator: the request needs a token whose role grants `permission`. Put it right under
    `@blp.route`: what it wraps (query arguments included) runs only once the token passed, so
    a request without the right token gets its 401/403 whatever else is wrong with it."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            principal = current_principal()
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
