"""Bearer tokens: created once, shown once, stored as a SHA-256 hash.

A token is 32 random bytes, so a plain SHA-256 is enough (no password-style stretching is
needed for a secret nobody chose), and it lets every request be checked with one index lookup.

An agent token may be bound to servers (`servers`: names and shell-style patterns): it then
speaks for those servers only, so a leaked token cannot mask another server's outage, fake its
key or version, resurrect its removed components or add servers beyond its binding.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import translate

import orjson
import sqlalchemy as sa

from eventstore.clock import Clock
from eventstore.tables import UTCDateTime

ROLES = ("agent", "viewer", "admin")
# What each role may do; admin reads everything a viewer reads. Every role may read the
# configuration: an agent needs the heartbeat period, and the settings name no server.
GRANTS = {
    "agent": {"agent", "configuration"},
    "viewer": {"viewer", "configuration"},
    "admin": {"viewer", "admin", "configuration"},
}
# Only agents write per server; viewers and admins act on the whole cluster.
BINDABLE_ROLES = ("agent",)

tokens_table = sa.Table(
    "api_tokens",
    sa.MetaData(),
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    # JSON array of server names and patterns; NULL: not bound (migration 0009).
    sa.Column("servers", sa.Text(), nullable=True),
)

# Stream tickets (api/stream_tickets.py): a browser's EventSource sends no Authorization header,
# so it opens the live stream with a ticket instead, valid once within TICKET_SECONDS. Stored
# like tokens, as a SHA-256, with the hash of the token that asked for it: the stream acts as
# that token. Redeemed by a compare-and-set (`used_at` NULL -> now, while unexpired), so a
# ticket opens one stream whichever worker process or `serve` instance it reaches.
TICKET_SECONDS = 60
TICKET_PREFIX = "cm_ticket_"
tickets_table = sa.Table(
    "stream_tickets",
    tokens_table.metadata,
    sa.Column("ticket_hash", sa.String(64), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("used_at", UTCDateTime(), nullable=True),
)

# A binding entry: a server name (letters, digits, '.', '_', '-') or a shell-style pattern of
# them with `*`, `?` and `[...]` (`[!...]` negates), as Python's fnmatch reads it.
_ENTRY = re.compile(r"[A-Za-z0-9._\-*?\[\]!]{1,200}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")  # api/schemas.py SERVER_NAME
_WILDCARDS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str
    # The servers this token may speak for (names and patterns), or None: every server.
    servers: tuple[str, ...] | None = None

    def may(self, permission: str) -> bool:
        return permission in GRANTS[self.role]

    def outside(self, servers: Iterable[str]) -> list[str]:
        """The names among `servers` this token may not speak for, sorted (none if unbound)."""
        if self.servers is None:
            return []
        allowed = _matcher(self.servers)
        return sorted({name for name in servers if not allowed(name)})


@functools.lru_cache(maxsize=1024)
def _matcher(binding: tuple[str, ...]) -> Callable[[str], bool]:
    """Whether a server name is within `binding`: exact names by a set lookup, the patterns by
    one compiled expression (case-sensitive, like server names: `Web01` is not `web01`)."""
    names = frozenset(e for e in binding if not _WILDCARDS & set(e))
    patterns = [translate(e) for e in binding if _WILDCARDS & set(e)]
    if not patterns:
        return names.__contains__
    match = re.compile("|".join(patterns)).match
    return lambda name: name in names or match(name) is not None


def parse_binding(text: str) -> tuple[str, ...]:
    """`web01,web02` or `web*` -> the binding's entries; ValueError saying what is wrong."""
    entries = tuple(dict.fromkeys(e.strip() for e in text.split(",")))
    if not entries or "" in entries:
        raise ValueError("give server names or patterns separated by commas, none empty")
    wrong = [e for e in entries if not (_ENTRY if _WILDCARDS & set(e) else _NAME).fullmatch(e)]
    if wrong:
        raise ValueError(
            f"{', '.join(map(repr, wrong))}: a server name is 1-200 letters, digits, '.', '_'"
            " or '-', starting with a letter or digit; a pattern may also use *, ? and [...]"
        )
    return entries


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What `token list` shows: never the token nor its hash."""

    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None
    servers: tuple[str, ...] | None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    engine: sa.Engine,
    clock: Clock,
    name: str,
    role: str,
    servers: Iterable[str] | None = None,
) -> str:
    """A new token; `servers` binds an agent token to those server names and patterns."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    binding = None
    if servers is not None:
        if role not in BINDABLE_ROLES:
            raise ValueError(
                f"only agent tokens are bound to servers: a {role} acts on the whole cluster"
            )
        binding = orjson.dumps(parse_binding(",".join(servers))).decode()
    token = f"cm_{role}_{secrets.token_urlsafe(32)}"
    with engine.begin() as conn:
        conn.execute(
            tokens_table.insert().values(
                name=name,
                role=role,
                token_hash=hash_token(token),
                created_at=clock(),
                servers=binding,
            )
        )
    return token


def issue_ticket(engine: sa.Engine, clock: Clock, token_hash: str) -> tuple[str, datetime]:
    """A new stream ticket for the token with this hash, and when it expires. Expired tickets
    are removed on the way: nothing can redeem them, so the table holds about a minute's."""
    ticket = TICKET_PREFIX + secrets.token_urlsafe(32)
    now = clock()
    expires_at = now + timedelta(seconds=TICKET_SECONDS)
    c = tickets_table.c
    with engine.begin() as conn:
        conn.execute(tickets_table.delete().where(c.expires_at <= now))
        conn.execute(
            tickets_table.insert().values(
                ticket_hash=hash_token(ticket), token_hash=token_hash, expires_at=expires_at
            )
        )
    return ticket, expires_at


def redeem_ticket(engine: sa.Engine, clock: Clock, ticket: str) -> str | None:
    """The hash of the token a ticket was issued to, if the ticket is unused and unexpired;
    from now on it is used. None if it is unknown, used or expired."""
    digest = hash_token(ticket)
    now = clock()
    c = tickets_table.c
    with engine.begin() as conn:
        claimed = conn.execute(
            tickets_table.update()
            .where(c.ticket_hash == digest, c.used_at.is_(None), c.expires_at > now)
            .values(used_at=now)
        ).rowcount
        if claimed != 1:
            return None
        return conn.execute(sa.select(c.token_hash).where(c.ticket_hash == digest)).scalar()


def revoke_tokens(engine: sa.Engine, clock: Clock, name: str) -> int:
    with engine.begin() as conn:
        result = conn.execute(
            tokens_table.update()
            .where(tokens_table.c.name == name, tokens_table.c.revoked_at.is_(None))
            .values(revoked_at=clock())
        )
    return result.rowcount


def list_tokens(engine: sa.Engine) -> list[TokenInfo]:
    c = tokens_table.c
    query = sa.select(c.name, c.role, c.created_at, c.revoked_at, c.servers).order_by(c.id)
    with engine.connect() as conn:
        return [
            TokenInfo(row.name, row.role, row.created_at, row.revoked_at, _binding(row.servers))
            for row in conn.execute(query)
        ]


def _binding(stored: str | None) -> tuple[str, ...] | None:
    return None if stored is None else tuple(orjson.loads(stored))


class TokenVerifier:
    """Looks tokens up by hash, caching answers for a few seconds (revocation takes effect
    within `ttl`), so authentication does not cost a query on every heartbeat request."""

    def __init__(self, engine: sa.Engine, ttl: float = 5.0):
        self.engine = engine
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def verify(self, token: str) -> Principal | None:
        return self.verify_hash(hash_token(token))

    def verify_hash(self, digest: str) -> Principal | None:
        """As `verify`, by the token's SHA-256 (what a stream ticket remembers)."""
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        c = tokens_table.c
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(c.name, c.role, c.servers).where(
                    c.token_hash == digest, c.revoked_at.is_(None)
                )
            ).first()
        principal = Principal(row.name, row.role, _binding(row.servers)) if row else None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self.ttl, principal)
        return principal
