"""PostgreSQL and Redis probes."""

from __future__ import annotations

import math
import socket
from dataclasses import dataclass, field

import psycopg
import redis
from psycopg import pq
from redis.backoff import NoBackoff
from redis.retry import Retry

from conformance.errors import (
    ConnectionRefused,
    ProbeProtocolError,
    ProbeTimeout,
    ProbeUnreachable,
    is_refusal,
)
from conformance.probes.base import Context

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


def _raise_if_refused(address: str, port: int, what: str, timeout_s: float) -> None:
    """libpq says only "no response": a plain connect tells a refusal (an observation) from silence."""
    try:
        with socket.create_connection((address, port), timeout=timeout_s):
            return
    except OSError as exc:
        if is_refusal(exc):
            raise ConnectionRefused(f"{what}: connection refused", endpoint=what.rsplit(" ", 1)[-1]) from exc


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
            _raise_if_refused(
                address, port, f"postgres at {self.address}:{self.port}", ctx.settings.connect_timeout_s
            )
            raise ProbeUnreachable(f"postgres at {self.address}:{self.port}: no response")
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
        try:
            with psycopg.connect(info, autocommit=True) as conn:
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
        """PING; an error reply (``NOAUTH``, ``LOADING``) is observed, silence is not."""
        address, port = ctx.dial(self.address, self.port)
        client = redis.Redis(
            host=address,
            port=port,
            password=self.password or None,
            socket_connect_timeout=ctx.settings.connect_timeout_s,
            socket_timeout=ctx.settings.read_timeout_s,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        try:
            answer = client.execute_command("PING")  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            return RedisReply(reply=str(answer if answer is not True else "PONG"), error=None)
        except (redis.AuthenticationError, redis.ResponseError) as exc:
            return RedisReply(reply=None, error=str(exc))
        except redis.TimeoutError as exc:
            raise ProbeTimeout(f"redis at {self.address}:{self.port}: timed out") from exc
        except redis.ConnectionError as exc:
            if is_refusal(exc):
                raise ConnectionRefused(
                    f"redis at {self.address}:{self.port}: connection refused",
                    endpoint=f"{self.address}:{self.port}",
                ) from exc
            raise ProbeUnreachable(f"redis at {self.address}:{self.port}: {exc}") from exc
        except redis.RedisError as exc:
            raise ProbeProtocolError(f"redis at {self.address}:{self.port}: {exc}") from exc
        finally:
            client.close()
