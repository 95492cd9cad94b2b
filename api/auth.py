"""Bearer-token authentication and role checks for the API."""

from __future__ import annotations

from functools import wraps

from flask import current_app, g, request

from api.problems import Problem

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
