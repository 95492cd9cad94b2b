"""CPU of a request/response over a Unix socket between two gevent processes.

    .venv/bin/python -m bench.ipc_roundtrip [--in-flight 1,8] [--count 20000]

What a committer process shared by the HTTP workers would add to every heartbeat (BENCHMARKS.md,
"HTTP API", session 5): a 700-byte request (about one heartbeat's rows) and a 20-byte answer,
with length-prefixed frames, from --in-flight greenlets at once. Prints round trips per second
and the CPU per round trip of each side (the server's from /proc).
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

from bench.common import cpu_seconds  # noqa: E402

REQUEST = struct.pack("!I", 700) + b"r" * 700
ANSWER = struct.pack("!I", 20) + b"a" * 20


def serve(path: str) -> None:
    def handle(sock, _address):
        reader = sock.makefile("rb")
        while header := reader.read(4):
            reader.read(struct.unpack("!I", header)[0])
            sock.sendall(ANSWER)

    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(64)
    StreamServer(listener, handle).serve_forever()


def client(path: str, count: int) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    reader = sock.makefile("rb")
    for _ in range(count):
        sock.sendall(REQUEST)
        reader.read(struct.unpack("!I", reader.read(4))[0])
    sock.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--in-flight", default="1,8")
    parser.add_argument("--count", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "ipc.sock")
        server = os.fork()
        if server == 0:
            serve(path)
            os._exit(0)
        try:
            while not os.path.exists(path):
                time.sleep(0.05)
            for in_flight in (int(n) for n in args.in_flight.split(",")):
                each = args.count // in_flight
                total = each * in_flight
                before, server_before = (
                    resource.getrusage(resource.RUSAGE_SELF),
                    cpu_seconds([server]),
                )
                started = time.perf_counter()
                gevent.joinall([gevent.spawn(client, path, each) for _ in range(in_flight)])
                seconds = time.perf_counter() - started
                after = resource.getrusage(resource.RUSAGE_SELF)
                own = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                other = cpu_seconds([server]) - server_before
                print(
                    f"{in_flight:2d} in flight: {total / seconds:7.0f} round trips/s, CPU per"
                    f" round trip: client {own / total * 1e6:5.1f} us,"
                    f" server {other / total * 1e6:5.1f} us"
                )
        finally:
            os.kill(server, 9)
            os.waitpid(server, 0)


if __name__ == "__main__":
    main()
