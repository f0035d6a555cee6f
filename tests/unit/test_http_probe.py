"""Unit tests for `conformance.probes.http.HttpGet` against small servers on loopback."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from conformance.errors import ConnectionRefused, ProbeResponseTooLarge, ProbeTimeout
from conformance.probes.base import Context
from conformance.probes.http import HttpGet, host_port
from conformance.profile import ProbeSettings

FAST = ProbeSettings(connect_timeout_s=0.5, read_timeout_s=0.5, deadline_s=1.0)


class _Server(ThreadingHTTPServer):
    """A threading server whose close joins every request thread."""

    daemon_threads = False
    block_on_close = True


class _Handler(BaseHTTPRequestHandler):
    """Base handler: quiet, and with access to the test's stop event and request log."""

    stop: ClassVar[threading.Event]
    seen: ClassVar[list[dict[str, str]]]

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""

    def record(self) -> None:
        """Remember the request line and headers."""
        self.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})


class _Ok(_Handler):
    def do_GET(self) -> None:
        self.record()
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Served-By", "unit-test")
        self.end_headers()
        self.wfile.write(body)


class _EchoHost(_Handler):
    def do_GET(self) -> None:
        self.record()
        body = (self.headers.get("Host") or "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Hang(_Handler):
    def do_GET(self) -> None:
        self.record()
        self.stop.wait(10)


class _Huge(_Handler):
    def do_GET(self) -> None:
        self.record()
        body = b"x" * 64_000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the probe hangs up once it has seen too much
            self.wfile.write(body)


class _Drip(_Handler):
    def do_GET(self) -> None:
        self.record()
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        try:
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                if self.stop.wait(0.2):
                    return
        except OSError:
            pass  # the probe gave up


class _HeaderDrip(_Handler):
    def do_GET(self) -> None:
        self.record()
        try:
            for byte in b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n":
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                if self.stop.wait(0.03):
                    return
        except OSError:
            pass


Serve = Callable[[type[_Handler]], tuple[int, list[dict[str, str]]]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start servers on 127.0.0.1:0 with a given handler; stop them and join every thread afterwards."""
    stop = threading.Event()
    running: list[tuple[_Server, threading.Thread]] = []

    def start(handler: type[_Handler]) -> tuple[int, list[dict[str, str]]]:
        seen: list[dict[str, str]] = []
        bound = type(handler.__name__, (handler,), {"stop": stop, "seen": seen})
        server = _Server(("127.0.0.1", 0), bound)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        running.append((server, thread))
        return server.server_address[1], seen

    yield start
    stop.set()
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        assert not thread.is_alive()


def context(settings: ProbeSettings = FAST) -> Context:
    """A probe context; HTTP probes do not use the host backend."""
    return Context(settings=settings, host=None)  # type: ignore[arg-type]


class TestHostPort:
    """`host_port` renders an address and port for a URL."""

    def test_ipv4(self) -> None:
        """IPv4 addresses are written as they are."""
        assert host_port("127.0.0.1", 80) == "127.0.0.1:80"

    def test_ipv6(self) -> None:
        """IPv6 literals are bracketed."""
        assert host_port("::1", 80) == "[::1]:80"


class TestHttpGet:
    """`HttpGet.observe` sends one bounded request and observes the whole answer."""

    def test_normal_answer(self, serve: Serve) -> None:
        """A normal answer is returned with status, headers, body, media type and fingerprint."""
        port, seen = serve(_Ok)
        response = HttpGet(address="127.0.0.1", port=port, path="/health").observe(context())
        assert response.url == f"http://127.0.0.1:{port}/health"
        assert response.status == 200
        assert response.body == b"ok\n"
        assert response.header("x-served-by") == "unit-test"
        assert response.header("X-SERVED-BY") == "unit-test"
        assert response.header("x-absent") is None
        assert response.media_type == "text/plain"
        assert response.fingerprint() == (200, hashlib.sha256(b"ok\n").hexdigest())
        assert response.body_preview() == "ok\n"
        assert response.host_header is None
        assert 0 <= response.elapsed_s < FAST.deadline_s
        assert seen[0]["path"] == "/health"
        assert seen[0]["user-agent"] == "gates-conformance"
        assert seen[0]["host"] == f"127.0.0.1:{port}"

    def test_host_header_override(self, serve: Serve) -> None:
        """A Host header override is what the server receives."""
        port, seen = serve(_EchoHost)
        probe = HttpGet(address="127.0.0.1", port=port, path="/", host_header="api.example.com")
        response = probe.observe(context())
        assert response.body == b"api.example.com"
        assert response.host_header == "api.example.com"
        assert [r["host"] for r in seen] == ["api.example.com"]

    def test_refused(self) -> None:
        """A port nobody listens on raises ConnectionRefused (an observation), naming the endpoint."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))  # bound but not listening: connections are refused
            port = sock.getsockname()[1]
            with pytest.raises(ConnectionRefused, match=str(port)):
                HttpGet(address="127.0.0.1", port=port, path="/").observe(context())
        finally:
            sock.close()

    def test_no_answer_times_out(self, serve: Serve) -> None:
        """A server that accepts but never answers raises ProbeTimeout after about the read timeout."""
        port, _ = serve(_Hang)
        started = time.monotonic()
        with pytest.raises(ProbeTimeout):
            HttpGet(address="127.0.0.1", port=port, path="/").observe(context())
        elapsed = time.monotonic() - started
        assert FAST.read_timeout_s * 0.8 <= elapsed < FAST.read_timeout_s + 1.0

    def test_body_over_cap(self, serve: Serve) -> None:
        """A body larger than max_body_bytes raises ProbeResponseTooLarge."""
        port, _ = serve(_Huge)
        settings = ProbeSettings(
            connect_timeout_s=0.5, read_timeout_s=0.5, deadline_s=1.0, max_body_bytes=1000
        )
        with pytest.raises(ProbeResponseTooLarge, match="1000-byte cap"):
            HttpGet(address="127.0.0.1", port=port, path="/").observe(context(settings))

    def test_body_at_cap(self, serve: Serve) -> None:
        """A body exactly max_body_bytes long is accepted."""
        port, _ = serve(_Ok)
        settings = ProbeSettings(connect_timeout_s=0.5, read_timeout_s=0.5, deadline_s=1.0, max_body_bytes=3)
        assert HttpGet(address="127.0.0.1", port=port, path="/").observe(context(settings)).body == b"ok\n"

    def test_slow_drip_hits_deadline(self, serve: Serve) -> None:
        """A body dripped one byte every 0.2 s raises ProbeTimeout once the total deadline has passed."""
        port, _ = serve(_Drip)
        started = time.monotonic()
        with pytest.raises(ProbeTimeout, match="within 1s"):
            HttpGet(address="127.0.0.1", port=port, path="/").observe(context())
        elapsed = time.monotonic() - started
        assert FAST.deadline_s <= elapsed < FAST.deadline_s + 1.0

    def test_header_drip_hits_deadline(self, serve: Serve) -> None:
        """Response headers dripped past the total deadline raise ProbeTimeout within about the deadline."""
        port, _ = serve(_HeaderDrip)
        settings = ProbeSettings(connect_timeout_s=0.5, read_timeout_s=0.5, deadline_s=0.3)
        started = time.monotonic()
        with pytest.raises(ProbeTimeout):
            HttpGet(address="127.0.0.1", port=port, path="/").observe(context(settings))
        assert time.monotonic() - started < settings.deadline_s + 0.5
