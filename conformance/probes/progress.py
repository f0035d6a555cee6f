"""What a work loop left behind: when its last successful cycle was, and how many recent cycles failed.

Times are the target's (its clock for a log, the database's ``now()`` for a table), so the machine running
the suite needs no synchronized clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql

from conformance.errors import ProbeError, ProbeUnreachable
from conformance.loops import LogSignal
from conformance.probes.base import Context
from conformance.probes.pgsession import message, pg_session

_LOG = r"""date +%s.%N
echo "--gates-log--"
eval "$1"
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressSample:
    """The loop's record as seen now: ages in seconds (None: never), failures and successes in the window."""

    source: str
    last_success_age_s: float | None
    last_failure_age_s: float | None
    failures: int
    successes: int
    window_s: int


def _epoch(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at.timestamp() if at.tzinfo is not None else None


def summarize(lines: list[str], signal: LogSignal, now: float, window_s: int, source: str) -> ProgressSample:
    """Count the success and failure events of JSON ``lines`` (others are ignored) as of ``now``."""
    events: list[tuple[float, object]] = []
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        at = _epoch(doc.get(signal.time_field)) if isinstance(doc, dict) else None
        if at is not None and at <= now + 1:
            events.append((at, doc.get(signal.event_field)))
    events.sort(key=lambda e: e[0])
    starts = [i for i, (_, event) in enumerate(events) if event in signal.start]
    last_ok = last_bad = None
    failures = successes = 0
    for at, event in events[starts[-1] if starts else 0 :]:
        recent = now - at <= window_s
        if event in signal.success:
            last_ok = at if last_ok is None else max(last_ok, at)
            successes += recent
        elif event in signal.failure:
            last_bad = at if last_bad is None else max(last_bad, at)
            failures += recent
    return ProgressSample(
        source=source,
        last_success_age_s=None if last_ok is None else round(now - last_ok, 3),
        last_failure_age_s=None if last_bad is None else round(now - last_bad, 3),
        failures=failures,
        successes=successes,
        window_s=window_s,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopLog:
    """Run the declared log command on the target and count the loop's cycle events."""

    signal: LogSignal
    window_s: int

    def observe(self, ctx: Context) -> ProgressSample:
        """One command: the target's clock, then the log lines."""
        result = ctx.host.run("bash -c %s gates-loop-log %s", _LOG, self.signal.command)
        head, sep, body = result.stdout.partition("--gates-log--\n")
        try:
            now = float(head.strip())
        except ValueError:
            raise ProbeError(
                f"cannot run commands on the target: {result.stderr.strip() or result.rc}"
            ) from None
        if result.rc != 0 or not sep:
            raise ProbeError(
                f"the loop's log command failed (exit {result.rc}): {result.stderr.strip()[-300:]}"
            )
        return summarize(body.splitlines(), self.signal, now, self.window_s, f"log: {self.signal.command}")


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopRows:
    """Read the loop's rows of a table in a read-only transaction."""

    address: str
    port: int
    dbname: str
    user: str
    password: str | None = field(default=None, repr=False)
    table: str
    time_column: str
    where: str
    success_when: str
    window_s: int

    def query(self) -> sql.Composed:
        """The one statement: the newest success and failure, and the window's counts, against ``now()``."""
        table = sql.SQL(".").join(sql.Identifier(p) for p in self.table.split("."))
        return sql.SQL(
            "SELECT extract(epoch FROM now() - max(t) FILTER (WHERE ok)), "
            "extract(epoch FROM now() - max(t) FILTER (WHERE NOT ok)), "
            "count(*) FILTER (WHERE NOT ok AND t > now() - make_interval(secs => {w})), "
            "count(*) FILTER (WHERE ok AND t > now() - make_interval(secs => {w})) "
            "FROM (SELECT {col} AS t, coalesce(({ok}), false) AS ok FROM {table} WHERE ({where})) AS cycles"
        ).format(
            w=sql.Literal(self.window_s),
            col=sql.Identifier(*self.time_column.split(".")),
            ok=sql.SQL(self.success_when),  # the profile's own SQL condition
            table=table,
            where=sql.SQL(self.where),
        )

    def observe(self, ctx: Context) -> ProgressSample:
        """Connect, ``SET TRANSACTION READ ONLY``, one SELECT."""
        where = f"{self.table} on {self.address}:{self.port}/{self.dbname}"
        try:
            with pg_session(
                ctx, address=self.address, port=self.port, dbname=self.dbname, user=self.user,
                password=self.password, where=where, read_only=True,
            ) as conn:  # fmt: skip
                row = conn.execute(self.query()).fetchone()
        except psycopg.OperationalError as exc:
            raise ProbeUnreachable(f"{where}: {message(exc, self.password)}") from exc
        except psycopg.Error as exc:
            raise ProbeError(f"{where}: {message(exc, self.password)}") from exc
        assert row is not None
        return ProgressSample(
            source=f"table {self.table} ({self.time_column})",
            last_success_age_s=None if row[0] is None else round(float(row[0]), 3),
            last_failure_age_s=None if row[1] is None else round(float(row[1]), 3),
            failures=int(row[2]),
            successes=int(row[3]),
            window_s=self.window_s,
        )
