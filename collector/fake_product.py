"""Fake ProGet, BuildMaster and Otter servers that answer `GET /health` like the documented
examples (the products' "Health API" pages), for `clustermon run --simulate N`, the collector's
benchmark and its tests.

Many fake servers share one port: server `name` lives at `http://HOST:PORT/<name>`, so its
target URL is that and its document is at `http://HOST:PORT/<name>/health`. One asyncio
process answers thousands of polls a second, so a benchmark measures the poller, not this.

    start(["proget01", "proget02"], error_after=60)  -> (base_url, stop)
    .venv/bin/python -m collector.fake_product --servers 1000 --port 8624 [--error-after 60]

Connections are closed after each answer by default: every fake server stands for a distinct
machine, and a poller would never reuse one machine's connection for another's poll (and with
polls 30 s apart, a kept-alive connection would have expired anyway). Tests can set any answer
per server (`FakeProducts.answer(name, Answer(...))`): a stack trace, a login page, a slow or
dripping body, a redirect, a chunked answer of 2 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http
import itertools
import signal
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import orjson

# The documented examples (ProGet 2023.27, BuildMaster 2023.9; Otter's page shows the same
# fields as BuildMaster's). Every field is kept, nulls included: the poller must cope with them.
_EXAMPLES: dict[str, dict[str, Any]] = {
    "ProGet": {
        "applicationName": "ProGet",
        "databaseStatus": "OK",
        "databaseStatusDetails": None,
        "extensionsInstalled": {
            "ProGetCoreEx": "23.0.27",
            "Inedo.SDK": "2.3.0",
            "Amazon AWS": "2.0.3",
            "Azure": "2.0.1",
            "InedoCore": "2.3.2",
            "Sonatype": "2.0.1",
        },
        "licenseStatus": "OK",
        "licenseStatusDetail": None,
        "versionNumber": "2023.27 (Build 5)",
        "releaseNumber": "23.0.27",
        "serviceStatus": "OK",
        "serviceStatusDetail": None,
        "replicationStatus": {
            "serverStatus": None,
            "serverError": None,
            "clientStatus": None,
            "clientError": None,
            "incoming": [],
            "outgoing": [],
        },
    },
    "BuildMaster": {
        "applicationName": "BuildMaster",
        "databaseStatus": "OK",
        "databaseStatusDetails": None,
        "extensionsInstalled": {
            "BuildMaster Core Extensions": "23.0.9",
            "Inedo.SDK": "2.4.0",
            "Git": "2.4.0",
            "InedoCore": "2.4.0",
            "Windows": "2.0.3",
        },
        "instanceName": None,
        "licenseStatus": "OK",
        "licenseStatusDetail": None,
        "versionNumber": "2023.9 (Build 1)",
        "releaseNumber": "23.0.9",
        "serviceStatus": "OK",
        "serviceStatusDetail": None,
    },
    "Otter": {
        "applicationName": "Otter",
        "databaseStatus": "OK",
        "databaseStatusDetails": None,
        "extensionsInstalled": {"Inedo.SDK": "2.4.0", "InedoCore": "2.4.0", "Windows": "2.0.3"},
        "instanceName": None,
        "licenseStatus": "OK",
        "licenseStatusDetail": None,
        "versionNumber": "2023.4 (Build 2)",
        "releaseNumber": "23.0.4",
        "serviceStatus": "OK",
        "serviceStatusDetail": None,
    },
}
PRODUCTS = tuple(_EXAMPLES)
SERVICE_ERROR_DETAIL = "The service has not sent a heartbeat in the last 5 minutes."
MAX_REQUEST_HEAD = 16 * 1024


def example(product: str = "ProGet") -> dict[str, Any]:
    """A fresh copy of the documented example document of `product`."""
    return orjson.loads(orjson.dumps(_EXAMPLES[product]))


@dataclass(frozen=True, slots=True)
class Answer:
    """What a fake server answers instead of its health document."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0  # seconds before the answer starts
    chunked: bool = False  # no Content-Length: the size shows only while reading
    drip: float = 0.0  # seconds between the ten pieces of the body (a slow trickle)
    hang_up: bool = False  # close the connection without answering


def json_answer(document: Any, status: int = 200, **options: Any) -> Answer:
    return Answer(status=status, body=orjson.dumps(document), **options)


class FakeProducts:
    """The fake servers behind one port: their documents and any answer set for one of them.

    `error_after` seconds after creation (on `monotonic`), `error_server` (default: the last
    name) reports its service as `Error`, as a product whose service stopped does."""

    def __init__(
        self,
        names: Iterable[str],
        *,
        products: Sequence[str] = ("ProGet",),
        error_after: float | None = None,
        error_server: str | None = None,
        keep_alive: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.names = list(names)
        unknown = set(products) - set(PRODUCTS)
        if unknown:
            raise ValueError(f"unknown products {sorted(unknown)}: choose from {PRODUCTS}")
        cycle = itertools.cycle(products)
        self._documents = {name: orjson.dumps(example(next(cycle))) for name in self.names}
        self._answers: dict[str, Answer] = {}
        self.keep_alive = keep_alive
        self.monotonic = monotonic
        self.error_server = error_server or (self.names[-1] if self.names else None)
        self._error_at = None if error_after is None else monotonic() + error_after
        self.requests = 0  # answered, for tests and the benchmark
        self.user_agents: dict[str, str] = {}  # the last User-Agent each server was polled with

    def path(self, name: str) -> str:
        return "/" + quote(name, safe="")

    def answer(self, name: str, answer: Answer | None) -> None:
        """Answer `answer` to polls of `name` from now on (None: its health document again)."""
        if answer is None:
            self._answers.pop(name, None)
        else:
            self._answers[name] = answer

    def document(self, name: str) -> dict[str, Any]:
        document = orjson.loads(self._documents[name])
        error_at = self._error_at if name == self.error_server else None
        if error_at is not None and self.monotonic() >= error_at:
            document["serviceStatus"] = "Error"
            document["serviceStatusDetail"] = SERVICE_ERROR_DETAIL
        return document

    def set_document(self, name: str, document: dict[str, Any]) -> None:
        self._documents[name] = orjson.dumps(document)

    def respond(self, method: str, path: str, user_agent: str = "") -> Answer:
        name, _, rest = path.lstrip("/").partition("/")
        name = unquote(name)
        if user_agent and name in self._documents:
            self.user_agents[name] = user_agent
        if name not in self._documents:
            return Answer(404, b"no such server", "text/plain")
        if name in self._answers:
            return self._answers[name]
        if rest.split("?", 1)[0] not in ("health", "health/"):
            return Answer(200, f"<html>{name}</html>".encode(), "text/html")
        if method not in ("GET", "HEAD"):
            return Answer(405, b"GET only", "text/plain")
        is_error_server = name == self.error_server and self._error_at is not None
        body = orjson.dumps(self.document(name)) if is_error_server else self._documents[name]
        return Answer(body=body)


class _Connection(asyncio.Protocol):
    """A minimal HTTP/1.1 server connection: request heads only (GET has no body)."""

    def __init__(self, products: FakeProducts):
        self.products = products
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy: asyncio.Task | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        if self.busy is not None:
            self.busy.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > MAX_REQUEST_HEAD and b"\r\n\r\n" not in self.buffer:
            self._close()
            return
        self._serve()

    def _serve(self) -> None:
        while self.busy is None and self.transport is not None and b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            try:
                method, target, _version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            except ValueError:
                self._close()
                return
            lowered = head.lower()
            keep = self.products.keep_alive and b"connection: close" not in lowered
            answer = self.products.respond(method, target, _header(head, lowered, b"user-agent"))
            self.products.requests += 1
            if answer.hang_up:
                self._close()
                return
            if answer.delay or answer.drip:
                self.busy = asyncio.get_running_loop().create_task(self._later(answer, keep))
                return
            self._write(answer, keep, method == "HEAD")

    async def _later(self, answer: Answer, keep: bool) -> None:
        await asyncio.sleep(answer.delay)
        if self.transport is None:
            return
        if not answer.drip:
            self._write(answer, keep, False)
        else:
            self._write_head(answer, keep)
            step = max(1, len(answer.body) // 10)
            for start in range(0, len(answer.body), step):
                if self.transport is None:
                    return
                self._write_body(answer, answer.body[start : start + step])
                await asyncio.sleep(answer.drip)
            self._end(answer, keep)
        self.busy = None
        if keep:
            self._serve()

    def _write(self, answer: Answer, keep: bool, head_only: bool) -> None:
        self._write_head(answer, keep)
        if not head_only and answer.body:
            self._write_body(answer, answer.body)
        self._end(answer, keep)

    def _write_head(self, answer: Answer, keep: bool) -> None:
        assert self.transport is not None
        phrase = http.HTTPStatus(answer.status).phrase
        lines = [
            f"HTTP/1.1 {answer.status} {phrase}",
            f"Content-Type: {answer.content_type}",
            "Server: clustermon-fake-product",
            f"Connection: {'keep-alive' if keep else 'close'}",
            "Transfer-Encoding: chunked"
            if answer.chunked
            else f"Content-Length: {len(answer.body)}",
            *(f"{name}: {value}" for name, value in answer.headers),
        ]
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def _write_body(self, answer: Answer, piece: bytes) -> None:
        assert self.transport is not None
        if answer.chunked:
            self.transport.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        else:
            self.transport.write(piece)

    def _end(self, answer: Answer, keep: bool) -> None:
        if self.transport is None:
            return
        if answer.chunked:
            self.transport.write(b"0\r\n\r\n")
        if not keep:
            self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _header(head: bytes, lowered: bytes, name: bytes) -> str:
    start = lowered.find(b"\r\n" + name + b":")
    if start < 0:
        return ""
    start += len(name) + 3
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else None].strip().decode("latin-1")


async def serve(
    products: FakeProducts,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
) -> asyncio.Server:
    """Listen for polls of `products` on the running loop; the server's first socket tells the
    port chosen when `port` is 0."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: _Connection(products), host, port, ssl=ssl_context, backlog=1024
    )


def base_url(server: asyncio.Server, ssl_context: ssl.SSLContext | None = None) -> str:
    host, port = server.sockets[0].getsockname()[:2]
    return f"{'https' if ssl_context else 'http'}://{host}:{port}"


def serve_in_thread(
    products: FakeProducts,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[str, Callable[[], None]]:
    """Serve `products` from a daemon thread of this process: (base URL, stop)."""
    loop = asyncio.new_event_loop()
    ready: list[asyncio.Server] = []
    failed: list[BaseException] = []
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            ready.append(loop.run_until_complete(serve(products, host, port, ssl_context)))
        except BaseException as exc:  # told to the caller below
            failed.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()
        ready[0].close()
        loop.run_until_complete(ready[0].wait_closed())
        for task in asyncio.all_tasks(loop):
            task.cancel()
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.sleep(0))
        loop.close()

    thread = threading.Thread(target=run, name="fake-products", daemon=True)
    thread.start()
    started.wait(10)
    if failed:
        raise failed[0]
    if not ready:
        raise RuntimeError("the fake product servers did not start within 10 s")

    def stop() -> None:
        if thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

    return base_url(ready[0], ssl_context), stop


def start(
    names: Iterable[str],
    port: int = 0,
    error_after: float | None = None,
    *,
    host: str = "127.0.0.1",
    products: Sequence[str] = ("ProGet",),
) -> tuple[str, Callable[[], None]]:
    """Fake servers `names` on one port of this process, from a background thread:
    (base URL, stop). Server `name`'s target URL is f"{base_url}/{name}" (`target_url`).
    With `error_after`, the last one reports its service as `Error` after that many seconds."""
    fakes = FakeProducts(names, products=products, error_after=error_after)
    return serve_in_thread(fakes, host=host, port=port)


def target_url(base: str, name: str) -> str:
    """The URL to configure as `name`'s target (the product's base address)."""
    return base + "/" + quote(name, safe="")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m collector.fake_product",
        description="Serve fake ProGet/BuildMaster/Otter /health documents until stopped.",
    )
    parser.add_argument("--servers", type=int, default=3, help="how many (named fake-0001, ...)")
    parser.add_argument("--prefix", default="fake-", help="name prefix [fake-]")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--products", default="ProGet", help="comma-separated, cycled")
    parser.add_argument("--error-after", type=float, default=None, help="seconds")
    parser.add_argument("--keep-alive", action="store_true", help="keep connections open")
    args = parser.parse_args(argv)
    names = [f"{args.prefix}{i:04d}" for i in range(1, args.servers + 1)]
    fakes = FakeProducts(
        names,
        products=args.products.split(","),
        error_after=args.error_after,
        keep_alive=args.keep_alive,
    )

    async def run() -> None:
        server = await serve(fakes, args.host, args.port)
        print(base_url(server), flush=True)  # the first line tells a parent process the port
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C still raises
                loop.add_signal_handler(signum, stopped.set)
        async with server:
            await stopped.wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    sys.exit(0)


if __name__ == "__main__":
    main()
