"""A TCP proxy run by threads of the test process, to cut a real server off its database.

`cut()` is what clients of a restarted or unreachable PostgreSQL see: every open connection is
closed (the client reads EOF, the server ends the session) and new ones are refused (nothing
listens on the port). `restore()` listens again on the same port.
"""

from __future__ import annotations

import contextlib
import socket
import threading

# Long enough for a COPY batch or a page of a replay in one read.
_CHUNK = 256 * 1024


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TcpProxy:
    """127.0.0.1:`port` -> `upstream`; not listening until `restore()` (or `with`)."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.port = _free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    def url_for(self, database_url: str) -> str:
        """`database_url` (a URL of the upstream server) through this proxy instead."""
        host, port = self.upstream
        for authority in (f"{host}:{port}", f"localhost:{port}"):
            if authority in database_url:
                return database_url.replace(authority, f"127.0.0.1:{self.port}", 1)
        raise ValueError(f"{database_url} does not name {host}:{port}")

    def restore(self) -> None:
        """Listen (again) on the proxy's port."""
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(0.05)  # the accept loop notices a cut within this
        self._listener = listener
        self._acceptor = threading.Thread(
            target=self._accept, args=(listener,), name="proxy-accept", daemon=True
        )
        self._acceptor.start()

    def cut(self) -> None:
        """Stop listening and close every connection, both ends."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
            self._acceptor = None
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            _close(sock)

    def __enter__(self) -> TcpProxy:
        self.restore()
        return self

    def __exit__(self, *exc_info) -> None:
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by cut()
                return
            client.settimeout(None)
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _close(client)
                    _close(server)
                    return
                self._sockets.update((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(
                    target=self._pump, args=(source, target), name="proxy-pump", daemon=True
                ).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(_CHUNK):
                target.sendall(data)
        except OSError:
            pass
        # One side ended: end the other too, as a dead peer would.
        with self._lock:
            self._sockets.discard(source)
            self._sockets.discard(target)
        _close(source)
        _close(target)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv() on it
    sock.close()
