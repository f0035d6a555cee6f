"""PostgreSQL and Redis probes."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field

import psycopg

from conformance.errors import (
    ConnectionRefused,
    ProbeProtocolError,
    ProbeTimeout,
    ProbeUnreachable,
    is_refusal,
)
from conformance.probes.base import Context
from conformance.probes.pgsession import pg_session
from conformance.probes.resp import RespConnection
from conformance.profile import ProbeSettings

_SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"  # length 8, code 80877103: one byte answers it
_PROTOCOL_3 = 196608
_CANNOT_CONNECT_NOW = "57P03"  # the one SQLSTATE PQping reports as "rejecting"
_MAX_STARTUP_REPLY = 65536


class _Budget:
    """What is left of the probe's deadline, as a per-operation socket timeout."""

    def __init__(self, read_s: float, deadline_s: float) -> None:
        self._read_s = read_s
        self._until = time.monotonic() + deadline_s

    def timeout(self) -> float:
        left = self._until - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return min(self._read_s, left)


def _recv_exact(sock: socket.socket, size: int, budget: _Budget) -> bytes:
    data = bytearray()
    while len(data) < size:
        sock.settimeout(budget.timeout())
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _leave_session(sock: socket.socket, budget: _Budget) -> None:
    """A server that let us in without a password goes on talking: say Terminate and read to its end, so the
    connection closes cleanly instead of being reset over unread data (which the server logs)."""
    with contextlib.suppress(OSError):
        sock.settimeout(budget.timeout())
        sock.sendall(b"X\0\0\0\x04")
        for _ in range(_MAX_STARTUP_REPLY // 4096):
            sock.settimeout(budget.timeout())
            if not sock.recv(4096):
                break


def _startup_message(user: str, dbname: str) -> bytes:
    params = b"".join(
        key + b"\0" + value.encode() + b"\0"
        for key, value in ((b"user", user), (b"database", dbname), (b"application_name", "gates-conformance"))
    )
    body = struct.pack("!I", _PROTOCOL_3) + params + b"\0"
    return struct.pack("!I", len(body) + 4) + body


def _sqlstate(fields: bytes) -> str | None:
    for field_ in fields.split(b"\0"):
        if field_[:1] == b"C":
            return field_[1:].decode("ascii", "replace")
    return None


def _ping(address: str, port: int, user: str, dbname: str, what: str, settings: ProbeSettings) -> str:
    """``PQping``'s semantics (``pg_isready``), spoken by the suite itself within the probe's own bounds.

    It asks for TLS as ``sslmode=prefer`` does, sends a start-up packet and reads the server's first answer: an
    authentication request or any error but "cannot connect now" means accepting, "cannot connect now" means
    rejecting. libpq's ping cannot go below a 2 s connect timeout and holds the interpreter while it waits;
    this exchange tells silence, a reset, a flood and another protocol apart by its own deadline. It leaves
    before authenticating, which a server does not log."""
    budget = _Budget(settings.read_timeout_s, settings.deadline_s)
    try:
        with socket.create_connection(
            (address, port), timeout=min(settings.connect_timeout_s, budget.timeout())
        ) as raw:
            raw.settimeout(budget.timeout())
            raw.sendall(_SSL_REQUEST)
            first = raw.recv(1)
            if not first:
                raise ProbeUnreachable(f"{what}: the server closed the connection at once")
            if first not in (b"S", b"N"):
                raise ProbeProtocolError(
                    f"{what}: not a PostgreSQL server (answered {first!r} to an SSLRequest)"
                )
            sock: socket.socket = raw
            if first == b"S":
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE  # sslmode=prefer verifies nothing either
                raw.settimeout(budget.timeout())
                sock = context.wrap_socket(raw)
            else:
                raw.settimeout(min(budget.timeout(), 0.3))  # it now waits for the start-up packet, silent
                extra = b""
                with contextlib.suppress(TimeoutError):
                    extra = raw.recv(1)
                if extra:
                    raise ProbeProtocolError(
                        f"{what}: not a PostgreSQL server (answered {first + extra!r}... to an SSLRequest)"
                    )
            sock.settimeout(budget.timeout())
            sock.sendall(_startup_message(user, dbname))
            header = _recv_exact(sock, 5, budget)
            if len(header) < 5:
                raise ProbeUnreachable(f"{what}: the server closed the connection during start-up")
            kind, length = header[:1], struct.unpack("!I", header[1:])[0]
            if kind not in (b"R", b"E", b"v") or not 4 <= length <= _MAX_STARTUP_REPLY:
                raise ProbeProtocolError(
                    f"{what}: not a PostgreSQL server (answered {header!r} to a start-up packet)"
                )
            body = _recv_exact(sock, length - 4, budget)
            if kind == b"E":
                return "rejecting" if _sqlstate(body) == _CANNOT_CONNECT_NOW else "accepting"
            if kind == b"R" and body[:4] == b"\0\0\0\0":
                _leave_session(sock, budget)
            return "accepting"
    except TimeoutError:
        raise ProbeTimeout(f"{what}: no answer within the {settings.deadline_s:g}s deadline") from None
    except ssl.SSLError as exc:
        raise ProbeProtocolError(f"{what}: TLS handshake failed ({exc.reason or exc})") from None
    except OSError as exc:
        if is_refusal(exc):
            raise ConnectionRefused(f"{what}: connection refused", endpoint=what.rsplit(" ", 1)[-1]) from None
        raise ProbeUnreachable(f"{what}: {exc.strerror or exc}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class PgPingResult:
    """What ``PQping``'s exchange (the engine of ``pg_isready``) showed: accepting or rejecting."""

    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PgPing:
    """``pg_isready`` semantics against a server, database and role."""

    address: str
    port: int
    dbname: str
    user: str

    def observe(self, ctx: Context) -> PgPingResult:
        """Ping; silence, a reset or another protocol is unobservable, a refusal is an observation."""
        address, port = ctx.dial(self.address, self.port)
        what = f"postgres at {self.address}:{self.port}"
        return PgPingResult(status=_ping(address, port, self.user, self.dbname, what, ctx.settings))


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
        where = f"postgres at {self.address}:{self.port}"
        try:
            with pg_session(
                ctx, address=self.address, port=self.port, dbname=self.dbname, user=self.user,
                password=self.password, where=where,
            ) as conn:  # fmt: skip
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
        except psycopg.OperationalError as exc:
            if ping.status == "accepting" or ping.status == "rejecting":
                last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                return PgSession(connected=False, error=last.replace(self.password or "\0", "<redacted>"))
            raise ProbeUnreachable(f"{where}: {exc}") from exc


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
