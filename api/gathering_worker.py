"""gunicorn's threaded worker, serving a request only once it has arrived.

gunicorn's `gthread` worker hands a connection to a thread as soon as it is readable, and the
thread then reads the request head with blocking reads. A client that sends a request line and
then one header line every few seconds keeps that thread for as long as it likes: 16 such
connections, with no token, stopped every request of `serve` on SQLite (2 workers, 8 threads each),
heartbeats included (issue 17). gevent workers do not have the problem (a waiting greenlet costs
nothing), but SQLite must stay on threads (cli/serve.py).

This worker gathers what a connection sends with non-blocking reads, a moment of a thread at a
time, and puts the connection back on the worker's poller until the head, and a body of stated
length, have arrived; only then does a thread serve the request, from the bytes gathered. Idle
connections are closed by gunicorn after its keep-alive timeout (2 s of silence); one that keeps
trickling is closed once GATHER_SECONDS have passed since its first byte. A chunked body is read
by the thread as before (agents send heartbeats with a Content-Length).

It also closes connections without waiting on the worker's main loop (see `_close`).
"""

from __future__ import annotations

import contextlib
import functools
import re
import selectors
import socket
import time

from gunicorn import util
from gunicorn.workers.gthread import _DEFER, ThreadWorker

GATHER_SECONDS = 10.0  # for a request's head and body, from its first byte
MAX_HEAD = 64 * 1024  # beyond this gunicorn's own limits answer (431/400): no more gathering
HEAD_END = b"\r\n\r\n"
CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*(\d{1,12})[ \t]*\r?$", re.I | re.M)
READ_SIZE = 64 * 1024
LINGER_SECONDS = 2.0  # for the client to close its side, as gunicorn's graceful close waits


class GatheringThreadWorker(ThreadWorker):
    """`worker_class` for `serve` and `run` on threads (cli/serve.py)."""

    # A body larger than this is not gathered: the app refuses it (413) without reading it.
    max_body = 1024 * 1024

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lingering: dict[socket.socket, float] = {}  # closing sockets -> their deadline

    def handle(self, conn):
        try:
            arrived = self._gather(conn)
        except OSError:  # reset by the client
            return False
        if arrived is None:
            return _DEFER  # on the poller until more comes, without a thread
        if not arrived:
            return False  # closed by the client, or too slow: close it
        return super().handle(conn)

    def _gather(self, conn) -> bool | None:
        """True once the request is here (handed to the parser), None while it is still coming,
        False when the connection should be closed."""
        buffered = getattr(conn, "gathered", None)
        if buffered is None:  # a new request
            buffered = conn.gathered = bytearray()
            conn.gather_deadline = None
            if conn.parser is not None:  # a kept-alive connection's read-ahead
                buffered += conn.parser.unreader.take_buffered()
        conn.sock.setblocking(False)
        while True:
            try:
                chunk = conn.sock.recv(READ_SIZE)
            except BlockingIOError:
                break
            if not chunk:  # the client closed its side
                return False
            buffered += chunk
            if len(buffered) > MAX_HEAD + self.max_body:
                break
        if buffered and conn.gather_deadline is None:
            conn.gather_deadline = time.monotonic() + GATHER_SECONDS
        if not self._complete(buffered):
            if conn.gather_deadline is not None and time.monotonic() > conn.gather_deadline:
                self.log.debug("closing a connection whose request is still incomplete")
                return False
            return None
        conn.gathered = None
        conn.init()  # makes the parser (once per connection) and a blocking socket
        conn.sock.setblocking(True)
        conn.data_ready = True
        conn.parser.unreader.unread(bytes(buffered))
        return True

    def _complete(self, buffered: bytearray) -> bool:
        end = buffered.find(HEAD_END)
        if end < 0:
            return len(buffered) > MAX_HEAD
        length = CONTENT_LENGTH.search(buffered, 0, end)
        if length is None:
            return True
        body = int(length.group(1))
        return body > self.max_body or len(buffered) >= end + len(HEAD_END) + body

    # --- closing without stalling the worker ----------------------------------------------

    def finish_request(self, conn, fs):
        conn.close = functools.partial(self._close, conn)  # see _close
        super().finish_request(conn, fs)

    def _close(self, conn, graceful: bool = False) -> None:
        """gunicorn closes a connection gracefully on the worker's main loop: it half-closes,
        then waits up to 2 s for the client to close its side. A client that never does (an
        HTTP library keeping a refused request's socket) stalled every connection of the
        worker, heartbeats included, for those 2 s. Here the socket lingers on the poller
        instead, drained as data comes, and is closed when the client closes or LINGER_SECONDS
        have passed (murder_pending)."""
        sock = conn.sock
        if not graceful:
            util.close(sock)
            return
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
            self.poller.register(sock, selectors.EVENT_READ, self._drain)
        except (OSError, ValueError, KeyError):
            util.close(sock)
            return
        self._lingering[sock] = time.monotonic() + LINGER_SECONDS

    def _drain(self, sock) -> None:
        try:
            if sock.recv(READ_SIZE):
                return  # more may come: linger on
        except BlockingIOError:
            return
        except OSError:
            pass
        self._forget(sock)

    def _forget(self, sock) -> None:
        self._lingering.pop(sock, None)
        with contextlib.suppress(OSError, ValueError, KeyError):
            self.poller.unregister(sock)
        util.close(sock)

    def murder_pending(self):
        super().murder_pending()
        now = time.monotonic()
        for sock in [s for s, deadline in self._lingering.items() if deadline <= now]:
            self._forget(sock)
