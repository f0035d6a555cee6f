"""One bounded PostgreSQL session, as every probe that logs in to a database opens it.

The login takes at most the connect timeout, each statement at most the read timeout (``statement_timeout``),
and the whole session at most the probe's deadline: libpq has no client-side read timeout, so a watchdog cuts
the socket when the deadline passes. A query the server cancelled, or a session cut at the deadline, is
``ProbeTimeout``; any other ``psycopg.Error`` reaches the caller, which alone knows whether it is an observation.
"""

from __future__ import annotations

import math
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from conformance.errors import ProbeTimeout
from conformance.probes.base import Context


def conninfo(address: str, port: int, dbname: str, user: str, password: str | None, timeout: float) -> str:
    """A libpq connection string for the probe: bounded connect, named application, TLS when offered."""
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


class Watchdog:
    """Cuts a connection's socket at the probe's deadline, so a server that stops answering mid-query
    cannot hold the probe."""

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

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def message(exc: BaseException, password: str | None) -> str:
    """A psycopg error on one line, with the password (were libpq ever to echo it) redacted."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
    return text.replace(password, "<redacted>") if password else text


@contextmanager
def pg_session(
    ctx: Context,
    *,
    address: str,
    port: int,
    dbname: str,
    user: str,
    password: str | None,
    where: str,
    read_only: bool = False,
) -> Iterator[psycopg.Connection[Any]]:
    """A session to ``dbname`` on ``address:port`` (dialled through the target), bounded as the module says.

    ``read_only``: the session is one ``READ ONLY`` transaction, which the caller's queries run in and which
    is rolled back at the end; otherwise each statement commits on its own.
    """
    host, dialled = ctx.dial(address, port)
    info = conninfo(host, dialled, dbname, user, password, ctx.settings.connect_timeout_s)
    watchdog: Watchdog | None = None
    try:
        with (
            psycopg.connect(info, autocommit=not read_only) as conn,
            Watchdog(conn, ctx.settings.deadline_s) as dog,
        ):
            watchdog = dog
            if read_only:
                conn.execute("SET TRANSACTION READ ONLY")
            conn.execute(
                "SELECT set_config('statement_timeout', %s, %s)",
                (str(int(ctx.settings.read_timeout_s * 1000)), read_only),
            )
            yield conn
            if read_only:
                conn.rollback()
    except psycopg.errors.QueryCanceled as exc:
        raise ProbeTimeout(f"{where}: query timed out") from exc
    except psycopg.Error as exc:
        if watchdog is not None and watchdog.fired:
            raise ProbeTimeout(
                f"{where}: no answer within the {ctx.settings.deadline_s:g}s deadline"
            ) from exc
        raise
