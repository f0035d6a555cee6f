"""The paid-call client hashes what the gateway hashed: it asks for the identity encoding and refuses any other.

A gateway (or a proxy in front of it) that compresses when the client accepts gzip would otherwise hand the suite
compressed bytes, while ``x-nooterra-response-sha256`` and the receipt's response binding cover the uncompressed
body: every response hash would then mismatch for a reason that is the client's, not the deployment's.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from conformance.probes.base import Context
from conformance.probes.x402 import request
from conformance.profile import ProbeSettings
from conformance.targets import make_host

BODY = json.dumps({"ok": True, "results": ["x" * 200] * 5}).encode()


class _Gzipping(BaseHTTPRequestHandler):
    """Compresses whenever the request accepts gzip (as httpx's default Accept-Encoding does)."""

    seen: ClassVar[list[str]] = []
    force: ClassVar[bool] = False

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        accepted = self.headers.get("Accept-Encoding", "")
        self.seen.append(accepted)
        body, extra = BODY, []
        if self.force or "gzip" in accepted:
            body, extra = gzip.compress(BODY), [("Content-Encoding", "gzip")]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-nooterra-response-sha256", hashlib.sha256(BODY).hexdigest())
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[tuple[int, type[_Gzipping]]]:
    handler = type("Handler", (_Gzipping,), {"seen": [], "force": False})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv.server_address[1], handler
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def _ctx() -> Context:
    return Context(
        settings=ProbeSettings(connect_timeout_s=2, read_timeout_s=2, deadline_s=5), host=make_host("local")
    )


def test_the_body_hashed_is_the_body_the_gateway_hashed(server: tuple[int, type[_Gzipping]]) -> None:
    """The client sends Accept-Encoding: identity (and records it), so the stored body hashes to the gateway's
    x-nooterra-response-sha256."""
    port, handler = server
    ex = request(_ctx(), "paid-call", f"http://127.0.0.1:{port}/exa/search?q=x", {"x-payment": "tok"})
    assert handler.seen == ["identity"]
    assert ex.status == 200
    assert hashlib.sha256(ex.body or b"").hexdigest() == ex.header("x-nooterra-response-sha256")
    assert ("Accept-Encoding", "identity") in ex.request_headers


def test_a_compressed_answer_anyway_is_a_protocol_error(server: tuple[int, type[_Gzipping]]) -> None:
    """A server that compresses although only identity was accepted is recorded as probe_protocol_error,
    never as compressed bytes that no hash could match."""
    port, handler = server
    handler.force = True
    ex = request(_ctx(), "paid-call", f"http://127.0.0.1:{port}/exa/search?q=x", {})
    assert ex.status is None
    assert ex.error_code == "probe_protocol_error"
    assert "gzip" in (ex.error or "")
