"""One poll of one product server's `GET /health`, with the limits that keep a bad target from
hurting the poller, and what went wrong worded for the people who read it.

Limits (issue 18, item 2):
- one deadline for the whole request, redirects and body included (`asyncio.timeout`): httpx's
  own timeouts bound each connect or read, so a server trickling a byte every few seconds, or
  a name lookup that hangs, would otherwise hold the poll far beyond its timeout;
- redirects followed only to the same scheme, host and port, at most MAX_REDIRECTS: a reverse
  proxy sending us to a login page elsewhere is a failure, not something to poll;
- bodies read as a stream and refused past `health.MAX_DOCUMENT_BYTES` (counted after any
  content decoding, so a compressed bomb is refused too).

Failures are classified into `domain.events.COLLECTION_FAILURES`: `refused` covers every
connection that could not be made or was dropped before an answer (refused, reset,
unreachable); `tls` every certificate or handshake problem; `not_health` an answer that is not
a health document (not JSON, other JSON, too large, not HTTP at all); `http_status` any status
but 200, refused redirects included. Details never repeat a URL's path or query (they may hold
secrets): a redirect's destination is named by its scheme, host and port only.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

import httpx

from collector import health
from domain.version import user_agent

MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ERROR_BODY_BYTES = 4096  # of a non-200 answer's body: enough for its first words
DETAIL_CHARACTERS = 200


USER_AGENT = user_agent("clustermon-collector")
HEADERS = {"User-Agent": USER_AGENT, "Accept": "application/json"}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one poll got: the health document, or a failure's kind and detail."""

    document: dict[str, Any] | None
    kind: str | None  # one of COLLECTION_FAILURES when the poll failed
    detail: str | None  # the failure worded for people ("connection refused")
    seconds: float  # how long the poll took

    @property
    def ok(self) -> bool:
        return self.document is not None


class Failed(Exception):
    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def health_url(url: str) -> str:
    """Where a target's document is: its base address + `/health`."""
    return url.rstrip("/") + "/health"


def tls_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """Verification against the system's trust store (where an administrator installs an
    internal CA), plus `ca_bundle` (a PEM file or a directory of them) when given."""
    context = ssl.create_default_context()
    if ca_bundle:
        try:
            if os.path.isdir(ca_bundle):
                context.load_verify_locations(capath=ca_bundle)
            else:
                context.load_verify_locations(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the CA bundle {ca_bundle!r}: {exc}") from None
    return context


def client(verify: ssl.SSLContext | bool, connections: int, **options: Any) -> httpx.AsyncClient:
    """The HTTP client for polls: redirects are ours to follow, no proxy from the environment
    (targets are on the administrator's network), as many connections as polls may run."""
    return httpx.AsyncClient(
        verify=verify,
        follow_redirects=False,
        trust_env=False,
        headers=HEADERS,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        **options,
    )


async def probe(http: httpx.AsyncClient, url: str, timeout: float) -> Outcome:
    """Poll `url`/health once, within `timeout` seconds for everything."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            body = await _fetch(http, health_url(url), timeout)
        document = health.parse(body)
    except Failed as failed:
        return _failed(failed.kind, failed.detail, started)
    except health.NotHealth as exc:
        return _failed("not_health", _not_health(str(exc)), started)
    except TimeoutError:
        return _failed("timeout", f"timed out after {timeout:g} s", started)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # and the OSErrors httpx wraps
        kind, detail = classify(exc, timeout)
        return _failed(kind, detail, started)
    except OSError as exc:
        kind, detail = classify(exc, timeout)
        return _failed(kind, detail, started)
    return Outcome(document, None, None, time.perf_counter() - started)


def _failed(kind: str, detail: str, started: float) -> Outcome:
    return Outcome(None, kind, _cut(detail, DETAIL_CHARACTERS), time.perf_counter() - started)


async def _fetch(http: httpx.AsyncClient, url: str, timeout: float) -> bytes:
    """The body of a 200 answer at `url`, following same-origin redirects."""
    current = httpx.URL(url)
    origin = _origin(current)
    for hop in range(MAX_REDIRECTS + 1):
        async with http.stream("GET", current, timeout=timeout) as response:
            status = response.status_code
            location = response.headers.get("location")
            if status in REDIRECT_STATUSES and location:
                destination = current.join(location)
                if _origin(destination) != origin:
                    raise Failed(
                        "http_status",
                        f"HTTP {status}: redirect to {_named(destination)} refused"
                        " (only the same host is followed)",
                    )
                if hop == MAX_REDIRECTS:
                    raise Failed(
                        "http_status", f"HTTP {status}: more than {MAX_REDIRECTS} redirects"
                    )
                current = destination
                continue
            if status != 200:
                raise Failed("http_status", await _status_detail(response))
            return await _read_capped(response)
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


def _named(url: httpx.URL) -> str:
    """A URL without user-info, path or query: what may be shown to any viewer."""
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}"


async def _read_capped(response: httpx.Response) -> bytes:
    limit = health.MAX_DOCUMENT_BYTES
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Failed(
            "not_health", f"not a health document: the answer is over 1 MB ({declared} bytes)"
        )
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise Failed("not_health", "not a health document: the answer is over 1 MB")
    return bytes(body)


async def _status_detail(response: httpx.Response) -> str:
    """ "HTTP 500: <the first words of the body>" (a title for HTML, the first line of a stack
    trace), or the status's reason phrase when the body says nothing."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= ERROR_BODY_BYTES:
            break
    text = body[:ERROR_BODY_BYTES].decode("utf-8", "replace")
    words = _first_words(text, "html" in response.headers.get("content-type", ""))
    return f"HTTP {response.status_code}: {words or response.reason_phrase or 'no reason given'}"


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


def _first_words(text: str, html: bool, limit: int = 120) -> str:
    if html or text.lstrip().startswith("<"):
        title = _TITLE.search(text)
        text = title.group(1) if title else _TAG.sub(" ", text)
    else:
        lines = [line for line in text.splitlines() if line.strip()]
        text = lines[0] if lines else ""
    return _cut(" ".join(text.split()), limit)


def _not_health(message: str) -> str:
    """health.parse's words, led by what the operator needs to read first."""
    if message.startswith("JSON but not a health document"):
        return message
    return f"not a health document: {message}"


def classify(exc: BaseException, timeout: float) -> tuple[str, str]:
    """The kind (COLLECTION_FAILURES) and detail of a poll that raised `exc`."""
    chain = _chain(exc)
    if any(isinstance(e, httpx.TimeoutException | TimeoutError) for e in chain):
        return "timeout", f"timed out after {timeout:g} s"
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            reason = e.verify_message or e.reason or "unknown reason"
            return "tls", f"certificate verify failed: {reason}"
        if isinstance(e, ssl.SSLError):
            return "tls", f"TLS failed: {e.reason or e.__class__.__name__}"
        if isinstance(e, socket.gaierror):
            if e.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)):
                return "dns", "name not found"
            return "dns", f"name lookup failed: {e.strerror or e}"
        if isinstance(e, ConnectionRefusedError):
            return "refused", "connection refused"
        if isinstance(e, ConnectionResetError):
            return "refused", "connection reset by the server"
    if isinstance(exc, httpx.RemoteProtocolError):
        message = str(exc)
        if "without sending" in message or "disconnected" in message.lower():
            return "refused", "the server closed the connection without an answer"
        return "not_health", f"not a health document: not an HTTP answer ({_cut(message, 80)})"
    if isinstance(exc, httpx.ProtocolError | httpx.DecodingError):
        return "not_health", f"not a health document: {_cut(str(exc), 80)}"
    for e in chain:
        if isinstance(e, OSError) and e.strerror:
            return "refused", f"cannot connect: {e.strerror.lower()}"
    return "refused", f"cannot connect: {_cut(str(exc), 80) or exc.__class__.__name__}"


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and every exception behind it (httpx wraps httpcore's, which wraps the OS's)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
