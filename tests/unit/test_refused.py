"""A refused connection on a port that must listen is an observation: the check fails, it does not error."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.errors import ConnectionRefused, ProbeUnreachable, is_refusal
from conformance.probes.base import Context
from conformance.probes.datastores import PgConnect, PgPing, RedisPing
from conformance.probes.http import HttpGet
from conformance.profile import ProbeSettings

GATES = Path(sys.executable).with_name("gates")
FAST = ProbeSettings(connect_timeout_s=0.5, read_timeout_s=0.5, deadline_s=1.0)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that is bound but not listening, so every connection to it is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def ctx() -> Context:
    """A context for probes on this host."""
    return Context(settings=FAST, host=None)  # type: ignore[arg-type]  # these probes run no commands


@pytest.mark.parametrize(
    "make",
    [
        lambda port: HttpGet(address="127.0.0.1", port=port, path="/health"),
        lambda port: PgPing(address="127.0.0.1", port=port, dbname="d", user="u"),
        lambda port: PgConnect(address="127.0.0.1", port=port, dbname="d", user="u", password="pw"),
        lambda port: RedisPing(address="127.0.0.1", port=port),
    ],
    ids=["http", "pg-ping", "pg-connect", "redis"],
)
def test_each_protocol_reports_refusal(make, closed_port: int) -> None:  # type: ignore[no-untyped-def]
    """HTTP, PostgreSQL and Redis probes all raise ConnectionRefused with the endpoint."""
    with pytest.raises(ConnectionRefused) as raised:
        make(closed_port).observe(ctx())
    assert raised.value.endpoint == f"127.0.0.1:{closed_port}"
    assert raised.value.reason_code == "connection_refused"


def test_unresolvable_name_is_not_a_refusal() -> None:
    """A name that does not resolve could not be observed at all: still ProbeUnreachable, not a refusal."""
    with pytest.raises(ProbeUnreachable) as raised:
        HttpGet(address="no-such-host.invalid", port=80, path="/").observe(ctx())
    assert not isinstance(raised.value, ConnectionRefused)


def test_is_refusal_follows_the_cause_chain() -> None:
    """A refusal wrapped by a client library is still found; other errors are not refusals."""
    outer = RuntimeError("wrapped")
    outer.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert is_refusal(outer)
    assert not is_refusal(TimeoutError("timed out"))
    assert not is_refusal(None)


def test_stopped_services_fail_the_gate(tmp_path: Path) -> None:
    """Every service down: each health check fails with connection_refused, the gate fails, exit 1."""
    socks = [socket.socket() for _ in range(3)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    http_port, pg_port, redis_port = (int(s.getsockname()[1]) for s in socks)
    profile = tmp_path / "down.yaml"
    profile.write_text(
        "schemaVersion: gates.profile/v1\nname: down\nprocessManager: none\nservices:\n"
        f"  - {{name: app, kind: http, role: api, bind: 127.0.0.1, port: {http_port},\n"
        '     health: {method: GET, path: /health, status: 200, body: "ok\\n", contentType: text/plain}}\n'
        f"  - {{name: db, kind: postgres, bind: 127.0.0.1, port: {pg_port}, database: d, dbUser: u}}\n"
        f"  - {{name: cache, kind: redis, bind: 127.0.0.1, port: {redis_port}}}\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [str(GATES), "run", "--profile", str(profile), "--gate", "runtime-health", "--out", str(tmp_path / "out"),
         "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    for sock in socks:
        sock.close()
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads((tmp_path / "out" / "gates" / "runtime-health.json").read_text())
    statuses = {c["id"]: (c["status"], c["failureCode"]) for c in report["checks"] if "[" in c["id"]}
    assert statuses, report
    assert set(statuses.values()) == {("fail", "connection_refused")}, statuses
    assert report["verdict"]["status"] == "fail"
    first = next(c["detail"] for c in report["checks"] if c["id"] == "health.redis.ping[cache]")
    assert first["observed"] == {"endpoint": f"127.0.0.1:{redis_port}", "connection": "refused"}
    assert "listen" in first["remediation"]
