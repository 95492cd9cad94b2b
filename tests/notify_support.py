"""For the notification tests: real receivers (a webhook, an HTTP server in a thread; a mail
server, aiosmtpd), both on 127.0.0.1 on a free port, and delivery rows and channels as the
follower and the API would leave them."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message

import orjson
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from domain.events import ChannelConfigured
from eventstore.commands import ClusterCommands
from notify.secrets import seal
from notify.tables import deliveries
from projections.readmodel.runner import ProjectionRunner


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict


@dataclass
class Webhook:
    """Answers `status` (settable) to every POST and keeps what it got."""

    status: int = 200
    location: str | None = None  # sent with a 3xx
    received: list[Received] = field(default_factory=list)
    got_one: threading.Event = field(default_factory=threading.Event)
    release: threading.Event | None = None  # when set: each answer waits for it
    url: str = ""

    def ids(self) -> list[str]:
        return [r.body["id"] for r in self.received]


@contextlib.contextmanager
def webhook(path: str = "/hooks/clustermon-s3cr3t-path") -> Iterator[Webhook]:
    hook = Webhook()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = orjson.loads(self.rfile.read(length))
            hook.received.append(Received(self.path, dict(self.headers), body))
            hook.got_one.set()
            if hook.release is not None:
                hook.release.wait(30)
            self.send_response(hook.status)
            if hook.location:
                self.send_header("Location", hook.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:  # quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    try:
        yield hook
    finally:
        if hook.release is not None:
            hook.release.set()
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Mailbox:
    messages: list[Message] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@contextlib.contextmanager
def mail_server(user: str = "ops", password: str = "s3cretMailPassw0rd") -> Iterator[Mailbox]:
    """An SMTP server without TLS that wants AUTH with `user`/`password` (plain over loopback)."""
    box = Mailbox(port=free_port())

    def authenticate(server, session, envelope, mechanism, data) -> AuthResult:
        ok = data.login == user.encode() and data.password == password.encode()
        return AuthResult(success=ok)

    controller = Controller(
        box,
        hostname=box.host,
        port=box.port,
        authenticator=authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


KEY = "test-secret-key"
SECRET_PATH = "clustermon-s3cr3t-path"


def configure(store, url: str, name: str = "ops") -> None:
    ClusterCommands(store).configure_channel(
        ChannelConfigured(
            name=name,
            kind="webhook",
            target="http://127.0.0.1/***",
            url_encrypted=seal(url, KEY),
            on=["stale", "recovered"],
        ),
        {"actor": "admin"},
    )
    ProjectionRunner(store).catch_up()


def remove(store, name: str) -> None:
    ClusterCommands(store).remove_channel(name, {"actor": "admin"})
    ProjectionRunner(store).catch_up()


def add_delivery(engine, clock, *, channel: str = "ops", server: str = "web01", **values) -> str:
    delivery_id = uuid.uuid4()
    payload = {
        "trigger": "stale",
        "server": server,
        "component": "service",
        "at": "2026-11-27T09:59:00Z",
        "reasons": ["no heartbeat for 300 s"],
        "source_position": 7,
        "link": "http://127.0.0.1:8000/?at=2026-11-27T09:59:00Z",
    }
    row = {
        "id": delivery_id,
        "channel": channel,
        "trigger": "stale",
        "server": server,
        "component": "service",
        "source_position": 7,
        "state": "pending",
        "attempts": 0,
        "payload": orjson.dumps(payload).decode(),
        "created_at": clock(),
        **values,
    }
    with engine.begin() as conn:
        conn.execute(deliveries.insert().values(**row))
    return str(delivery_id)


def row_of(engine, delivery_id: str):
    with engine.connect() as conn:
        return conn.execute(
            sa.select(deliveries).where(deliveries.c.id == uuid.UUID(delivery_id))
        ).one()
