"""Bearer tokens: created once, shown once, stored as a SHA-256 hash.

A token is 32 random bytes, so a plain SHA-256 is enough (no password-style stretching is
needed for a secret nobody chose), and it lets every request be checked with one index lookup.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa

from eventstore.clock import Clock
from eventstore.tables import UTCDateTime

ROLES = ("agent", "viewer", "admin")
# What each role may do; admin reads everything a viewer reads.
GRANTS = {"agent": {"agent"}, "viewer": {"viewer"}, "admin": {"viewer", "admin"}}

tokens_table = sa.Table(
    "api_tokens",
    sa.MetaData(),
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
)


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str

    def may(self, permission: str) -> bool:
        return permission in GRANTS[self.role]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: sa.Engine, clock: Clock, name: str, role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = f"cm_{role}_{secrets.token_urlsafe(32)}"
    with engine.begin() as conn:
        conn.execute(
            tokens_table.insert().values(
                name=name, role=role, token_hash=hash_token(token), created_at=clock()
            )
        )
    return token


def revoke_tokens(engine: sa.Engine, clock: Clock, name: str) -> int:
    with engine.begin() as conn:
        result = conn.execute(
            tokens_table.update()
            .where(tokens_table.c.name == name, tokens_table.c.revoked_at.is_(None))
            .values(revoked_at=clock())
        )
    return result.rowcount


class TokenVerifier:
    """Looks tokens up by hash, caching answers for a few seconds (revocation takes effect
    within `ttl`), so authentication does not cost a query on every heartbeat request."""

    def __init__(self, engine: sa.Engine, ttl: float = 5.0):
        self.engine = engine
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def verify(self, token: str) -> Principal | None:
        digest = hash_token(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(tokens_table.c.name, tokens_table.c.role).where(
                    tokens_table.c.token_hash == digest, tokens_table.c.revoked_at.is_(None)
                )
            ).first()
        principal = Principal(row.name, row.role) if row else None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self.ttl, principal)
        return principal
