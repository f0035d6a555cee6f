"""Work loops and how their progress is seen, as a profile declares them (``loops:``).

A worker or maintenance loop is judged by what it leaves behind each cycle, never by its own health
answer: rows of a table (a timestamp column and a success condition, read in a read-only transaction),
or the structured lines it logs (a time field and the events that mark a cycle's success or failure).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from conformance.errors import ConfigError
from conformance.yamlsource import PathKey

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


class Resolver(Protocol):
    """What parsing needs from the profile loader: variable substitution and located errors."""

    def text(self, raw: Any, path: PathKey) -> str:
        """``raw`` with its variables substituted."""

    def integer(self, raw: Any, path: PathKey, *, low: int, high: int) -> int:
        """``raw`` as an integer within bounds."""

    def fail(self, path: PathKey, message: str) -> ConfigError:
        """A configuration error located at ``path``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSignal:
    """JSON lines the loop writes per cycle, printed on the target by ``command``."""

    command: str
    time_field: str
    event_field: str
    success: tuple[str, ...]
    failure: tuple[str, ...]
    # events a loop logs when it (re)starts: what an earlier process logged says nothing of the running one
    start: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SqlSignal:
    """Rows the loop writes per cycle in a PostgreSQL table of a declared ``postgres`` service."""

    service: str
    table: str  # [schema.]table
    time_column: str
    where: str  # SQL condition selecting the loop's rows (``true``: every row)
    success_when: str  # SQL condition true for a successful cycle's row


@dataclass(frozen=True, slots=True, kw_only=True)
class Loop:
    """A work loop: how recent its last success must be, and how many failures a window may hold."""

    name: str
    service: str | None  # the declared service that runs it, for the report
    max_age_s: int
    window_s: int
    max_failures: int
    log: LogSignal | None = None
    sql: SqlSignal | None = None

    @property
    def signal(self) -> str:
        """Which kind of signal the loop declares."""
        return "log" if self.log is not None else "sql"


def _names(r: Resolver, raw: Any, path: PathKey) -> tuple[str, ...]:
    return tuple(r.text(x, (*path, i)) for i, x in enumerate(raw or ()))


def _ident(r: Resolver, raw: Any, path: PathKey) -> str:
    text = r.text(raw, path)
    if not _IDENT.match(text):
        raise r.fail(path, f"expected an identifier ([schema.]name), got {text!r}")
    return text


def parse_loops(
    r: Resolver, raws: Sequence[Mapping[str, Any]], services: Mapping[str, str]
) -> tuple[Loop, ...]:
    """The ``loops`` section; ``services`` maps each declared service name to its kind."""
    loops: list[Loop] = []
    for i, raw in enumerate(raws):
        p: PathKey = ("loops", i)
        svc = raw.get("service")
        if svc is not None and svc not in services:
            raise r.fail((*p, "service"), f"service {svc!r} is not a declared service")
        log = sql = None
        if "log" in raw:
            lr = raw["log"]
            log = LogSignal(
                command=r.text(lr["command"], (*p, "log", "command")),
                time_field=lr.get("timeField", "timestamp"),
                event_field=lr.get("eventField", "event"),
                success=_names(r, lr["success"], (*p, "log", "success")),
                failure=_names(r, lr.get("failure"), (*p, "log", "failure")),
                start=_names(r, lr.get("start"), (*p, "log", "start")),
            )
        else:
            sr = raw["sql"]
            if services.get(sr["service"]) != "postgres":
                raise r.fail(
                    (*p, "sql", "service"), f"service {sr['service']!r} is not a declared postgres service"
                )
            sql = SqlSignal(
                service=sr["service"],
                table=_ident(r, sr["table"], (*p, "sql", "table")),
                time_column=_ident(r, sr["timeColumn"], (*p, "sql", "timeColumn")),
                where=r.text(sr.get("where", "true"), (*p, "sql", "where")),
                success_when=r.text(sr["successWhen"], (*p, "sql", "successWhen")),
            )
        max_age = r.integer(raw["maxAgeSeconds"], (*p, "maxAgeSeconds"), low=1, high=10**8)
        loops.append(
            Loop(
                name=raw["name"],
                service=svc,
                max_age_s=max_age,
                window_s=r.integer(
                    raw.get("windowSeconds", max_age), (*p, "windowSeconds"), low=1, high=10**8
                ),
                max_failures=r.integer(raw.get("maxFailures", 0), (*p, "maxFailures"), low=0, high=10**8),
                log=log,
                sql=sql,
            )
        )
    names = [lp.name for lp in loops]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise r.fail(("loops",), f"loop name(s) declared twice: {', '.join(dupes)}")
    return tuple(loops)
