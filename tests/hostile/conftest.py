"""Hostile servers on loopback: each accepts connections and misbehaves in one way, until stopped."""

from __future__ import annotations

import contextlib
import gzip
import multiprocessing
import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

Behaviour = Callable[[socket.socket, threading.Event], None]


def _sleep_until(stop: threading.Event) -> None:
    stop.wait(120)


def _drain(conn: socket.socket) -> None:
    conn.settimeout(0.2)
    with contextlib.suppress(OSError):
        conn.recv(65536)


def hang(conn: socket.socket, stop: threading.Event) -> None:
    """Accept, read, never answer."""
    _sleep_until(stop)


def trickle(prefix: bytes, filler: bytes = b"a") -> Behaviour:
    """Send ``prefix``, then one byte of ``filler`` every 50 ms, forever: the reply never completes."""

    def run(conn: socket.socket, stop: threading.Event) -> None:
        _drain(conn)
        conn.sendall(prefix)
        while not stop.wait(0.05):
            conn.sendall(filler)

    return run


def flood(prefix: bytes, filler: bytes = b"x" * 65536) -> Behaviour:
    """Send ``prefix``, then as fast as the peer reads, forever."""

    def run(conn: socket.socket, stop: threading.Event) -> None:
        _drain(conn)
        conn.sendall(prefix)
        while not stop.is_set():
            conn.sendall(filler)

    return run


def say(data: bytes, *, then_hang: bool = True) -> Behaviour:
    """Answer ``data`` to the first request, then hang (or close)."""

    def run(conn: socket.socket, stop: threading.Event) -> None:
        _drain(conn)
        conn.sendall(data)
        if then_hang:
            _sleep_until(stop)

    return run


def reset(conn: socket.socket, stop: threading.Event) -> None:
    """Read the request, then reset the connection (RST, not FIN)."""
    _drain(conn)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def gzip_bomb() -> bytes:
    """An HTTP answer whose 64 MiB body compresses to about 64 KiB."""
    body = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


SSH_BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"


class HostileServer:
    """A loopback listener running ``behaviour`` on every connection, each on its own thread, in a forked process.

    A process of its own, because a client library that blocks holding the GIL (libpq's ``PQping``) would
    otherwise starve a server thread of this process and be judged against silence.
    """

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.process = multiprocessing.get_context("fork").Process(target=self._serve, daemon=True)
        self.process.start()

    def _serve(self) -> None:
        stop = threading.Event()
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self._one, args=(conn, stop), daemon=True).start()

    def _one(self, conn: socket.socket, stop: threading.Event) -> None:
        try:
            self.behaviour(conn, stop)
        except Exception:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        """Stop the server process and its connections."""
        self.process.kill()
        self.process.join(5)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Behaviour], HostileServer]]:
    """Start hostile servers; every one is stopped when the test ends."""
    started: list[HostileServer] = []

    def start(behaviour: Behaviour) -> HostileServer:
        server = HostileServer(behaviour)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()
