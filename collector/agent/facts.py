"""What the machine says about itself: OS and version, the address it reaches clustermon from,
and what the product's own `GET /health` answers on this machine.

Standard library and httpx only; no call that exists on one platform alone.
"""

from __future__ import annotations

import contextlib
import ipaddress
import platform
import socket
from urllib.parse import urlsplit

import httpx

from collector import health

MAX_OS_TEXT = 100  # the heartbeat schema's limit for `os` and `os_version`


class HealthUnavailable(Exception):
    """The local product's /health did not give a health document; says what came instead."""


def os_facts() -> tuple[str | None, str | None]:
    """("Ubuntu", "24.04"), ("Windows", "10.0.20348"), ...: the distribution where the OS has
    one (Linux's os-release), else the system's name and version."""
    system = platform.system() or None
    version: str | None = platform.version() if system == "Windows" else platform.release()
    if system == "Linux":
        with contextlib.suppress(OSError):
            release = platform.freedesktop_os_release()
            system = release.get("NAME") or system
            version = release.get("VERSION_ID") or version
    elif system == "Darwin":
        system, version = "macOS", platform.mac_ver()[0] or version
    return _cut(system), _cut(version or None)


def route_ip(url: str) -> str | None:
    """This machine's address on the route to `url`'s host (the interface the operating
    system would send from): connecting a UDP socket sends nothing, it only picks the route.
    None when the host does not resolve or no route exists."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(address)
            ip = probe.getsockname()[0]
    except (OSError, IndexError, UnicodeError):
        return None
    ip = str(ip).split("%", 1)[0]  # an IPv6 zone names our own interface: meaningless there
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return None
    return None if parsed.is_unspecified else str(parsed)


def read_health(client: httpx.Client, health_url: str) -> dict:
    """The local product's health document, or HealthUnavailable saying why not (answers over
    1 MB are refused unread)."""
    try:
        with client.stream("GET", health_url) as response:
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > health.MAX_DOCUMENT_BYTES:
                    raise HealthUnavailable(f"{health_url} answered more than 1 MB")
    except httpx.TimeoutException:
        raise HealthUnavailable(f"{health_url} timed out") from None
    except httpx.TransportError as exc:
        raise HealthUnavailable(f"{health_url}: {exc or exc.__class__.__name__}") from None
    if response.status_code != 200:
        raise HealthUnavailable(f"{health_url} answered {response.status_code}")
    try:
        return health.parse(body)
    except health.NotHealth as exc:
        raise HealthUnavailable(f"{health_url}: {exc}") from None


def _cut(text: str | None) -> str | None:
    if text is None:
        return None
    text = " ".join(text.split())
    return text[:MAX_OS_TEXT] or None
