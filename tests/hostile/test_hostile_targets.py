"""Hostile targets: every probe kind against servers that hang, trickle, flood, lie about lengths, reset,
send a compression bomb or speak another protocol. Each probe ends in `error` with its own reason, by its own
deadline and size cap (the servers never stop on their own: a returned result is the proof), and the check run
holds them under its memory limit."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    SSH_BANNER,
    Behaviour,
    HostileServer,
    flood,
    gzip_bomb,
    hang,
    reset,
    say,
    trickle,
)

from conformance.errors import ProbeError, ProbeMemoryExceeded
from conformance.probes.base import Context, Prober
from conformance.probes.datastores import PgConnect, PgPing, RedisPing
from conformance.probes.http import HttpGet
from conformance.profile import ProbeSettings
from gates.runner import SuiteProcess

TIGHT = ProbeSettings(connect_timeout_s=0.5, read_timeout_s=0.5, deadline_s=2.0, max_body_bytes=65536)
# Not a timing assertion: a probe that never returned would otherwise hang the self-test run.
HANG_GUARD_S = 60.0

Probe = Callable[[int], Any]
HTTP: Probe = lambda port: HttpGet(address="127.0.0.1", port=port, path="/health")  # noqa: E731
REDIS: Probe = lambda port: RedisPing(address="127.0.0.1", port=port)  # noqa: E731
PG_PING: Probe = lambda port: PgPing(address="127.0.0.1", port=port, dbname="d", user="u")  # noqa: E731
PG_LOGIN: Probe = lambda port: PgConnect(address="127.0.0.1", port=port, dbname="d", user="u", password="pw")  # noqa: E731

CASES: list[tuple[str, Probe, Behaviour, str]] = [
    ("http-hang", HTTP, hang, "probe_timeout"),
    ("http-trickle", HTTP, trickle(b"HTTP/1.1 200 OK\r\nX-Slow: "), "probe_timeout"),
    ("http-flood", HTTP, flood(b"HTTP/1.1 200 OK\r\n\r\n"), "probe_response_too_large"),
    ("http-flood-headers", HTTP, flood(b"HTTP/1.1 200 OK\r\nX: "), "probe_protocol_error"),
    ("http-short-body", HTTP, say(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nok", then_hang=False),
     "probe_protocol_error"),
    ("http-huge-length", HTTP, trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n"), "probe_timeout"),
    ("http-reset", HTTP, reset, "probe_unreachable"),
    ("http-gzip-bomb", HTTP, say(gzip_bomb()), "probe_protocol_error"),
    ("http-speaks-ssh", HTTP, say(SSH_BANNER), "probe_timeout"),
    ("redis-hang", REDIS, hang, "probe_timeout"),
    ("redis-trickle", REDIS, trickle(b"+PON", b"G"), "probe_timeout"),
    ("redis-flood", REDIS, flood(b"+"), "probe_response_too_large"),
    ("redis-huge-bulk", REDIS, say(b"$99999999999\r\nPONG\r\n"), "probe_response_too_large"),
    ("redis-bulk-cut-short", REDIS, say(b"$1000\r\nPONG", then_hang=False), "probe_protocol_error"),
    ("redis-bad-length", REDIS, say(b"$-7\r\n"), "probe_protocol_error"),
    ("redis-reset", REDIS, reset, "probe_unreachable"),
    ("redis-speaks-http", REDIS, say(gzip_bomb()), "probe_protocol_error"),
    ("redis-speaks-ssh", REDIS, say(SSH_BANNER), "probe_protocol_error"),
    ("pg-hang", PG_PING, hang, "probe_timeout"),
    ("pg-flood", PG_PING, flood(b"H"), "probe_protocol_error"),
    ("pg-huge-length", PG_PING, say(b"R\x7f\xff\xff\xf0" + b"\0" * 100), "probe_protocol_error"),
    ("pg-reset", PG_PING, reset, "probe_unreachable"),
    ("pg-speaks-ssh", PG_PING, say(SSH_BANNER), "probe_protocol_error"),
    ("pg-login-speaks-ssh", PG_LOGIN, say(SSH_BANNER), "probe_protocol_error"),
    ("pg-login-hang", PG_LOGIN, hang, "probe_timeout"),
    ("pg-no-tls-then-silent", PG_PING, say(b"N"), "probe_timeout"),
    ("pg-no-tls-then-flood", PG_PING, say(b"N" + b"R" * 100), "probe_protocol_error"),
    ("pg-tls-then-garbage", PG_PING, say(b"S" + b"not a TLS record\r\n" * 4), "probe_protocol_error"),
    ("pg-speaks-http", PG_PING, say(b"HTTP/1.1 400 Bad Request\r\n\r\n", then_hang=False), "probe_protocol_error"),
]  # fmt: skip


def observe(spec: Any) -> ProbeError:
    """Run ``spec`` the way the check run does (memoizing prober, foreign errors mapped) and return its error."""
    prober = Prober(Context(settings=TIGHT, host=None))  # type: ignore[arg-type]  # these probes run no commands
    try:
        result = prober.submit(spec).result(timeout=HANG_GUARD_S)
    except ProbeError as exc:
        return exc
    finally:
        prober.close()
    raise AssertionError(f"a hostile target was observed as if it answered: {result!r}")


@pytest.mark.parametrize(("make", "behaviour", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_target_is_an_error_with_its_reason(
    make: Probe, behaviour: Behaviour, reason: str, serve: Callable[[Behaviour], HostileServer]
) -> None:
    """The probe gives up by its own bounds, with the reason code of what went wrong, never a pass."""
    server = serve(behaviour)
    error = observe(make(server.port))
    assert error.reason_code == reason, f"{type(error).__name__}: {error}"
    assert str(server.port) in str(error)


_VERSION = b"server_version\x0015.0\x00"
_PG_READY = (
    b"R\x00\x00\x00\x08\x00\x00\x00\x00"  # AuthenticationOk
    + b"S" + struct.pack("!I", 4 + len(_VERSION)) + _VERSION  # ParameterStatus
    + b"K\x00\x00\x00\x0c\x00\x00\x00\x01\x00\x00\x00\x02"  # BackendKeyData
    + b"Z\x00\x00\x00\x05I"  # ReadyForQuery
)  # fmt: skip


def _pg_login_then(after_login: Behaviour) -> Behaviour:
    """A server that completes PostgreSQL's start-up (no TLS, no password) and then behaves as ``after_login``."""

    def run(conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(5)
        while True:
            length = struct.unpack("!I", conn.recv(4, socket.MSG_WAITALL))[0]
            body = conn.recv(length - 4, socket.MSG_WAITALL)
            if body[:4] not in (b"\x04\xd2\x16\x2f", b"\x04\xd2\x16\x30"):  # not an SSL or GSS request
                break
            conn.sendall(b"N")
        conn.sendall(_PG_READY)
        after_login(conn, stop)

    return run


@pytest.mark.parametrize(
    "behaviour",
    [hang, trickle(b"T\x00\x00\x00\xff\x00\x01")],
    ids=["hangs-mid-query", "trickles-a-row-description"],
)
def test_postgres_that_stops_answering_after_login_is_cut_at_the_deadline(
    behaviour: Behaviour, serve: Callable[[Behaviour], HostileServer]
) -> None:
    """libpq has no read timeout: the login probe cuts its own socket at the probe deadline (`probe_timeout`)."""
    server = serve(_pg_login_then(behaviour))
    error = observe(PG_LOGIN(server.port))
    assert error.reason_code == "probe_timeout", f"{type(error).__name__}: {error}"
    assert "deadline" in str(error)


def test_a_probe_out_of_memory_names_itself() -> None:
    """A probe that exhausts the check run's memory is `probe_memory_limit`, naming the probe, not a crash."""

    class Greedy:
        address = "127.0.0.1"
        port = 6379

        def observe(self, ctx: Context) -> None:
            raise MemoryError

    error = observe(Greedy())
    assert isinstance(error, ProbeMemoryExceeded)
    assert error.reason_code == "probe_memory_limit"
    assert "Greedy(address=127.0.0.1, port=6379)" in str(error)
    assert "--memory-limit-mb" in str(error)


def test_check_run_holds_hostile_datastores_under_its_memory_limit(
    tmp_path: Path, serve: Callable[[Behaviour], HostileServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real check run, in its child process under a 256 MiB data limit, meets a flooding HTTP service, a Redis
    announcing a 100 GB reply and flooding, and a PostgreSQL that floods: each check is `error` with its reason."""
    web = serve(flood(b"HTTP/1.1 200 OK\r\n\r\n"))
    cache = serve(say(b"$99999999999\r\n" + b"x" * (1 << 20)))
    db = serve(flood(b"H"))
    profile = tmp_path / "hostile.yaml"
    profile.write_text(
        "schemaVersion: gates.profile/v1\nname: hostile\nprocessManager: none\n"
        "probe: {connectTimeoutSeconds: 0.5, readTimeoutSeconds: 0.5, deadlineSeconds: 2}\nservices:\n"
        f"  - {{name: app, kind: http, role: api, bind: 127.0.0.1, port: {web.port},\n"
        '     health: {method: GET, path: /health, status: 200, body: "ok\\n", contentType: text/plain}}\n'
        f"  - {{name: db, kind: postgres, bind: 127.0.0.1, port: {db.port}, database: d, dbUser: u}}\n"
        f"  - {{name: cache, kind: redis, bind: 127.0.0.1, port: {cache.port}}}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("GATES_SUITE_MEMORY_MB", "256")
    checks = ["health.http.status_exact", "health.postgres.accepting", "health.redis.ping"]
    process = SuiteProcess(profile=str(profile), sets=[], target="local", checks=checks, out=tmp_path / "out")
    limits = Path(f"/proc/{process.child.pid}/limits").read_text()
    run = process.wait(timeout_s=120)
    data_limit = next(line for line in limits.splitlines() if line.startswith("Max data size"))
    assert data_limit.split()[3] == str(256 << 20), data_limit
    got = {rid: (r["outcome"], r.get("reasonCode")) for rid, r in run.results.items()}
    assert got == {
        "health.http.status_exact[app]": ("error", "probe_response_too_large"),
        "health.postgres.accepting[db]": ("error", "probe_protocol_error"),
        "health.redis.ping[cache]": ("error", "probe_response_too_large"),
    }, run.log.read_text()[-2000:]


def _pg_answering(reply: bytes, seen: Path) -> Behaviour:
    """A server that refuses TLS, reads a start-up packet, answers ``reply`` and records in ``seen`` what the
    client sent after it (the server runs in a process of its own)."""

    def run(conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(5)
        conn.recv(8, socket.MSG_WAITALL)  # the SSLRequest
        conn.sendall(b"N")
        length = struct.unpack("!I", conn.recv(4, socket.MSG_WAITALL))[0]
        conn.recv(length - 4, socket.MSG_WAITALL)
        conn.sendall(reply)
        after = conn.recv(64)
        seen.write_bytes(after)

    return run


def _pg_error(sqlstate: bytes) -> bytes:
    fields = b"SFATAL\0C" + sqlstate + b"\0Mthe database system is not yet accepting connections\0\0"
    return b"E" + struct.pack("!I", 4 + len(fields)) + fields


@pytest.mark.parametrize(
    ("reply", "status", "after"),
    [
        (_pg_error(b"57P03"), "rejecting", b""),
        (_pg_error(b"28P01"), "accepting", b""),  # PQping: a server that turns a login away is up
        (b"R\x00\x00\x00\x0c\x00\x00\x00\x05salt", "accepting", b""),  # asked for a password: leave silently
        (_PG_READY, "accepting", b"X\x00\x00\x00\x04"),  # let in: say Terminate, so nothing is reset
    ],
    ids=["cannot-connect-now", "auth-failed", "password-asked", "trusted"],
)
def test_postgres_ping_has_pg_isready_semantics(
    reply: bytes, status: str, after: bytes, serve: Callable[[Behaviour], HostileServer], tmp_path: Path
) -> None:
    """The ping reads the server's first answer as ``PQping`` does, and leaves the way a server does not log."""
    seen = tmp_path / "after-reply"
    server = serve(_pg_answering(reply, seen))
    prober = Prober(Context(settings=TIGHT, host=None))  # type: ignore[arg-type]  # no commands
    try:
        result = prober.submit(PG_PING(server.port)).result(timeout=HANG_GUARD_S)
    finally:
        prober.close()
    assert result.status == status
    for _ in range(200):  # the server writes once the client has closed or spoken; not a timing assertion
        if seen.exists():
            break
        threading.Event().wait(0.05)
    assert seen.read_bytes() == after
