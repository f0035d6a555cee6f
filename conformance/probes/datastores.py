"""PostgreSQL and Redis probes."""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import pq

from conformance.errors import (
    ConnectionRefused,
    ProbeError,
    ProbeProtocolError,
    ProbeTimeout,
    ProbeUnreachable,
    is_refusal,
)
from conformance.probes.base import Context
from conformance.probes.resp import RespConnection

PING_NAMES = {
    pq.Ping.OK: "accepting",
    pq.Ping.REJECT: "rejecting",
    pq.Ping.NO_RESPONSE: "no_response",
    pq.Ping.NO_ATTEMPT: "no_attempt",
}


def _conninfo(address: str, port: int, dbname: str, user: str, password: str | None, timeout: float) -> str:
    return psycopg.conninfo.make_conninfo(
        host=address,
        port=str(port),
        dbname=dbname,
        user=user,
        password=password or None,
        connect_timeout=str(max(2, math.ceil(timeout))),  # libpq treats anything below 2 s as 2 s
        application_name="gates-conformance",
        sslmode="prefer",
    )


_SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"  # length 8, code 80877103: one byte answers it


def _diagnose(address: str, port: int, what: str, connect_s: float, read_s: float) -> ProbeError:
    """libpq says only "no response": one bounded exchange tells a refusal (an observation), silence,
    a reset and another protocol apart. It sends an SSLRequest and reads one byte."""
    try:
        with socket.create_connection((address, port), timeout=connect_s) as sock:
            sock.settimeout(read_s)
            sock.sendall(_SSL_REQUEST)
            first = sock.recv(1)
            extra = b""
            if first in (
                b"S",
                b"N",
            ):  # a server then waits for the handshake, silent: one that talks on is not one
                sock.settimeout(min(read_s, 0.3))
                with contextlib.suppress(TimeoutError):
                    extra = sock.recv(1)
    except TimeoutError:
        return ProbeTimeout(f"{what}: no answer within {read_s:g}s")
    except OSError as exc:
        if is_refusal(exc):
            return ConnectionRefused(f"{what}: connection refused", endpoint=what.rsplit(" ", 1)[-1])
        return ProbeUnreachable(f"{what}: {exc.strerror or exc}")
    if extra:
        return ProbeProtocolError(
            f"{what}: not a PostgreSQL server (answered {first + extra!r}... to an SSLRequest)"
        )
    if first in (b"S", b"N", b"E"):
        return ProbeUnreachable(f"{what}: no response")
    if not first:
        return ProbeUnreachable(f"{what}: the server closed the connection at once")
    return ProbeProtocolError(f"{what}: not a PostgreSQL server (answered {first!r} to an SSLRequest)")


class _Watchdog:
    """Cuts a connection's socket at the probe's deadline, so a server that stops answering mid-query
    cannot hold the probe: libpq has no client-side read timeout."""

    def __init__(self, conn: psycopg.Connection[Any], deadline_s: float) -> None:
        self.fired = False
        self._fd = conn.pgconn.socket
        self._timer = threading.Timer(deadline_s, self._cut)
        self._timer.daemon = True

    def _cut(self) -> None:
        self.fired = True
        try:
            with socket.socket(fileno=os.dup(self._fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


@dataclass(frozen=True, slots=True, kw_only=True)
class PgPingResult:
    """What libpq's ``PQping`` (the engine of ``pg_isready``) reported."""

    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PgPing:
    """``pg_isready`` semantics against a server, database and role."""

    address: str
    port: int
    dbname: str
    user: str

    def observe(self, ctx: Context) -> PgPingResult:
        """Ping; a server that does not answer at all is unobservable (`ProbeUnreachable`)."""
        address, port = ctx.dial(self.address, self.port)
        info = _conninfo(address, port, self.dbname, self.user, None, ctx.settings.connect_timeout_s)
        code = pq.Ping(pq.PGconn.ping(info.encode()))
        if code == pq.Ping.NO_RESPONSE:
            what = f"postgres at {self.address}:{self.port}"
            raise _diagnose(address, port, what, ctx.settings.connect_timeout_s, ctx.settings.read_timeout_s)
        if code == pq.Ping.NO_ATTEMPT:
            raise ProbeProtocolError(
                f"postgres at {self.address}:{self.port}: connection parameters rejected by libpq"
            )
        return PgPingResult(status=PING_NAMES[code])


@dataclass(frozen=True, slots=True, kw_only=True)
class PgSession:
    """What a real login to the declared database showed."""

    connected: bool
    error: str | None = None
    database: str | None = None
    in_recovery: bool | None = None
    server_version: int | None = None
    # With a schema asked for: how many tables it holds (None: the schema does not exist).
    schema_tables: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PgConnect:
    """Log in to the declared database and ask who and where we are."""

    address: str
    port: int
    dbname: str
    user: str
    password: str | None = field(default=None, repr=False)
    schema: str | None = None

    def observe(self, ctx: Context) -> PgSession:
        """Connect; a server that answered with a refusal is an observation, silence is not."""
        ping = PgPing(address=self.address, port=self.port, dbname=self.dbname, user=self.user).observe(ctx)
        address, port = ctx.dial(self.address, self.port)
        info = _conninfo(address, port, self.dbname, self.user, self.password, ctx.settings.connect_timeout_s)
        watchdog: _Watchdog | None = None
        try:
            with (
                psycopg.connect(info, autocommit=True) as conn,
                _Watchdog(conn, ctx.settings.deadline_s) as watchdog,
            ):
                conn.execute(
                    "SELECT set_config('statement_timeout', %s, false)",
                    (str(int(ctx.settings.read_timeout_s * 1000)),),
                )
                row = conn.execute("SELECT current_database(), pg_is_in_recovery()").fetchone()
                assert row is not None
                tables = None
                if self.schema is not None:
                    found = conn.execute(
                        "SELECT (SELECT count(*) FROM pg_tables WHERE schemaname = n.nspname) "
                        "FROM pg_namespace n WHERE n.nspname = %s",
                        (self.schema,),
                    ).fetchone()
                    tables = None if found is None else int(found[0])
                return PgSession(
                    connected=True,
                    database=str(row[0]),
                    in_recovery=bool(row[1]),
                    server_version=conn.info.server_version,
                    schema_tables=tables,
                )
        except psycopg.errors.QueryCanceled as exc:
            raise ProbeTimeout(f"postgres at {self.address}:{self.port}: query timed out") from exc
        except psycopg.OperationalError as exc:
            if watchdog is not None and watchdog.fired:
                raise ProbeTimeout(
                    f"postgres at {self.address}:{self.port}: no answer within the {ctx.settings.deadline_s:g}s deadline"
                ) from exc
            if ping.status == "accepting" or ping.status == "rejecting":
                message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                return PgSession(connected=False, error=message.replace(self.password or "\0", "<redacted>"))
            raise ProbeUnreachable(f"postgres at {self.address}:{self.port}: {exc}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisReply:
    """The answer to ``PING``: the reply text, or the error the server sent."""

    reply: str | None
    error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisPing:
    """Send ``PING`` to a Redis server."""

    address: str
    port: int
    password: str | None = field(default=None, repr=False)

    def observe(self, ctx: Context) -> RedisReply:
        """PING; an error reply (``NOAUTH``, ``LOADING``) is observed, silence, garbage or a flood is not."""
        address, port = ctx.dial(self.address, self.port)
        settings = ctx.settings
        conn = RespConnection(
            address, port, what=f"redis at {self.address}:{self.port}", connect_s=settings.connect_timeout_s,
            read_s=settings.read_timeout_s, deadline_s=settings.deadline_s, cap=settings.max_body_bytes,
        )  # fmt: skip
        try:
            if self.password:
                auth = conn.command("AUTH", self.password)
                if auth.error is not None:
                    return RedisReply(reply=None, error=auth.error.replace(self.password, "<redacted>"))
            answer = conn.command("PING")
            return RedisReply(reply=answer.text, error=answer.error)
        finally:
            conn.close()
