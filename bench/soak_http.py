"""The soak's HTTP/1.1 client: plain asyncio streams, one connection per request, and an SSE reader.

Why not a client library: none is installed (no httpx, no aiohttp), and the load generator
shares the two cores with the servers it measures, so it should cost as little CPU per request
as possible. A request here is a connect, one write, and a parse of the status line, headers
and a Content-Length or chunked body: what the server's answers use.

Why a new connection per request: an agent beats every 30 s and a dashboard polls every 5 s,
both far beyond gunicorn's keep-alive (2 s), so in a real deployment nearly every one of those
requests opens its own connection; the soak pays the same accept and handshake.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Endpoint:
        """From `http://host:port` (the soak serves on loopback only)."""
        host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
        return cls(host, int(port))


def request_bytes(
    endpoint: Endpoint, method: str, path: str, token: str, body: bytes = b"", extra: str = ""
) -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {endpoint.host}:{endpoint.port}\r\n"
        f"Authorization: Bearer {token}\r\n{extra}"
    )
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    """Status code and headers (lower-cased names) of a response."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed before the status line")
    status = int(status_line.split(b" ", 2)[1])
    headers: dict[bytes, bytes] = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The pieces of a chunked body, as they arrive."""
    while True:
        size = int((await reader.readline()).split(b";", 1)[0], 16)
        if size == 0:
            await reader.readline()  # the empty trailer
            return
        data = await reader.readexactly(size)
        await reader.readexactly(2)  # CRLF
        yield data


async def _body(reader: asyncio.StreamReader, headers: dict[bytes, bytes]) -> bytes:
    if b"content-length" in headers:
        return await reader.readexactly(int(headers[b"content-length"]))
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        return b"".join([chunk async for chunk in _chunks(reader)])
    return await reader.read()  # until the server closes


async def fetch(endpoint: Endpoint, raw_request: bytes, timeout: float) -> tuple[int, bytes]:
    """Send one request on a new connection; (status, body). Raises on a broken answer or when
    the whole exchange takes longer than `timeout` seconds."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        try:
            writer.write(raw_request)
            status, headers = await _head(reader)
            return status, await _body(reader, headers)
        finally:
            writer.close()


@dataclass
class SseFrame:
    id: str | None
    event: str | None
    data: bytes


async def sse_frames(
    endpoint: Endpoint, raw_request: bytes, connect_timeout: float
) -> AsyncIterator[SseFrame | int]:
    """Open an event stream. Yields the status first (an int); then, for a 200, every frame
    until the server ends the stream. Comments (keep-alives) and `retry:` lines are skipped."""
    async with asyncio.timeout(connect_timeout):
        reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        writer.write(raw_request)
        status, headers = await _head(reader)
    try:
        yield status
        if status != 200:
            return
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            pieces = _chunks(reader)
        else:
            pieces = _raw(reader)
        pending = b""
        async for piece in pieces:
            pending += piece
            *complete, pending = pending.split(b"\n\n")
            for block in complete:
                frame = _frame(block)
                if frame is not None:
                    yield frame
    finally:
        writer.close()


async def _raw(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while data := await reader.read(65536):
        yield data


def _frame(block: bytes) -> SseFrame | None:
    id_ = event = None
    data = []
    for line in block.split(b"\n"):
        field, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if field == b"id":
            id_ = value.decode()
        elif field == b"event":
            event = value.decode()
        elif field == b"data":
            data.append(value)
    if event is None and not data:
        return SseFrame(id_, None, b"") if id_ is not None else None
    return SseFrame(id_, event, b"\n".join(data))
