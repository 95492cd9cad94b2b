"""Channel URLs sealed at rest: they carry credentials (a webhook's secret path, a mail
password, a Slack token) that clustermon must reuse but nobody may read back.

Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) keyed from CLUSTERMON_SECRET_KEY: the
key is stretched with HKDF to Fernet's 32 bytes, so any secret string works. Changing the
secret key makes the stored channels unreadable (the sender says so per channel); put each
channel again after a change.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"clustermon notification channel url"


class Unreadable(ValueError):
    """Sealed with another secret key (or damaged)."""


def _fernet(secret_key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def seal(url: str, secret_key: str) -> str:
    return _fernet(secret_key).encrypt(url.encode()).decode("ascii")


def unseal(sealed: str, secret_key: str) -> str:
    try:
        return _fernet(secret_key).decrypt(sealed.encode("ascii")).decode()
    except (InvalidToken, ValueError):
        raise Unreadable(
            "the channel's URL was stored under another CLUSTERMON_SECRET_KEY: put the channel"
            " again"
        ) from None
