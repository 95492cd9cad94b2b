"""The tokens `clustermon run` hands out: one admin, one viewer, one agent token per instance.

Only a token's hash is stored in the database, so the tokens themselves are kept in a file the
owner alone may read (mode 0600), `tokens.env`: beside the SQLite database (the instance folder
by default); for PostgreSQL, `tokens-postgresql-HOST-PORT-DB.env` in the instance folder. It is
a shell file (`. instance/tokens.env`), so the README's curl lines run as pasted. A later `run`
of the same instance shows the same tokens: an open dashboard tab or a script keeps working
across restarts. A token is minted only when the file holds none this database knows (a first
run, a lost file, another database); the earlier `laptop-*` token of that role is then revoked
(nobody can read it any more) and `run` says so loudly.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from api import tokens
from eventstore.clock import Clock

# role -> the shell variable the README's lines use
VARIABLES = {"admin": "ADMIN_TOKEN", "viewer": "VIEWER_TOKEN", "agent": "AGENT_TOKEN"}
FILE_NAME = "tokens.env"
_LINE = re.compile(r"^export (?P<name>[A-Z_]+)=(?P<value>cm_[A-Za-z0-9_-]+)$")


def token_name(role: str) -> str:
    return f"laptop-{role}"


@dataclass
class LaptopTokens:
    path: Path
    tokens: dict[str, str]  # role -> token
    minted: list[str] = field(default_factory=list)  # roles this run made a token for
    replaced: list[str] = field(default_factory=list)  # ... whose earlier token it revoked


def tokens_path(database_url: str, instance_path: str) -> Path:
    """`tokens.env` beside a SQLite database file; for another database, a file named after it
    in the instance folder (beside the default SQLite database: the two must not share one)."""
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(url.database).resolve().parent / FILE_NAME
    named = f"{url.get_backend_name()}-{url.host or 'local'}-{url.port or ''}-{url.database or ''}"
    return Path(instance_path) / f"tokens-{re.sub(r'[^A-Za-z0-9._-]+', '_', named)}.env"


def read_file(path: Path) -> dict[str, str]:
    """role -> token, as the file holds them (nothing if it is missing or unreadable)."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    roles = {variable: role for role, variable in VARIABLES.items()}
    held = {}
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match and match["name"] in roles:
            held[roles[match["name"]]] = match["value"]
    return held


def ensure(engine: sa.Engine, clock: Clock, path: Path, database: str) -> LaptopTokens:
    """The instance's tokens: those of the file this database still knows, new ones for the
    rest (revoking the earlier `laptop-*` token of that role); the file rewritten if any
    changed. `database`: the URL as it may be shown, for the file's comment."""
    verifier = tokens.TokenVerifier(engine, ttl=0)
    held = read_file(path)
    result = LaptopTokens(path, {})
    for role in VARIABLES:
        token = held.get(role)
        principal = verifier.verify(token) if token else None
        if principal is not None and principal.role == role and principal.servers is None:
            result.tokens[role] = token  # type: ignore[assignment]  # verified: not None
            continue
        if tokens.revoke_tokens(engine, clock, token_name(role)):
            result.replaced.append(role)
        result.tokens[role] = tokens.create_token(engine, clock, token_name(role), role)
        result.minted.append(role)
    if result.minted:
        write_file(path, result.tokens, database)
    return result


def write_file(path: Path, held: dict[str, str], database: str) -> None:
    """Replace the file at once (a reader never sees half of it), readable by its owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lines = [
        "# clustermon run: this instance's API tokens (only their hashes are in the database).",
        f"# database: {database}",
        "# Use them in a shell: . ./tokens.env   (then $ADMIN_TOKEN, $VIEWER_TOKEN, $AGENT_TOKEN)",
        *(f"export {VARIABLES[role]}={token}" for role, token in held.items()),
    ]
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # an older partial file may have had another mode
        out.write("\n".join(lines) + "\n")
    os.replace(partial, path)
