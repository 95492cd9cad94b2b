"""Target URLs as people may see them: with their secrets masked.

A product's base URL may carry credentials an admin put there for a reverse proxy in front of
it: a password in the user-info (`https://monitor:pa55@proget01`) or a token in the query
(`?api_key=…`, a signed link's `sig=…`). The poller needs them; nobody reading the API, the
page or the log does, so every place that shows a target's URL shows `masked(url)` instead.
Everything else in the URL is kept exactly as written (no re-encoding), so an admin still
recognises the address.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, unquote_plus, urlsplit, urlunsplit

MASK = "***"

# Words that make a parameter name secret wherever they stand in it (`access_token`,
# `X-Amz-Signature`, `apikey`, `client_secret`, `proxyPassword`).
_SECRET_PARTS = ("token", "secret", "password", "passwd", "apikey", "signature", "credential")
# Words that make it secret only as a whole word: `key` in `api_key` or `keyId`, not `monkey`;
# `sig`, `auth` and `pwd` likewise (`signal`, `author` and `pwdump` stay readable).
_SECRET_WORDS = {
    "key",
    "sig",
    "auth",
    "authorization",
    "pwd",
    "pass",
    "session",
    "sid",
    "jwt",
    "bearer",
}
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


def secret_name(name: str) -> bool:
    """Whether a query parameter called `name` (in any case and spelling: snake, kebab, camel)
    probably holds a secret."""
    lowered = name.lower()
    if any(part in lowered for part in _SECRET_PARTS):
        return True
    return any(word.lower() in _SECRET_WORDS for word in _WORDS.findall(name))


def masked(url: str) -> str:
    """`url` with the user-info password and the values of secret-looking query (and fragment)
    parameters replaced by `***`. A URL that cannot be parsed is masked whole: better an
    unreadable address than a leaked secret."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return MASK
    netloc = _masked_netloc(parts)
    query = _masked_pairs(parts.query)
    fragment = _masked_pairs(parts.fragment)
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url  # nothing secret: exactly as written
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, fragment))


def _masked_netloc(parts: SplitResult) -> str:
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return parts.netloc
    user, colon, password = userinfo.partition(":")
    if not colon or not password:
        return parts.netloc  # a user name alone is not a secret
    return f"{user}:{MASK}@{host}"


def _masked_pairs(text: str) -> str:
    """`a=1&token=2` -> `a=1&token=***`; separators and unnamed values kept as they were."""
    if "=" not in text:
        return text
    pieces = re.split(r"([&;])", text)
    for i in range(0, len(pieces), 2):
        name, eq, value = pieces[i].partition("=")
        if eq and value and secret_name(unquote_plus(name)):
            pieces[i] = f"{name}={MASK}"
    return "".join(pieces)
