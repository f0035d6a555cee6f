"""The health-dependency drill: take one dependency away at a time, watch the health answers, put it back.

For each declared dependency, in order:

1. snapshot the deployment: every declared health answer (green or how it is not), which declared ports
   listen, and the dependency's own state (its unit, or whether its processes run);
2. refuse the dependency (nothing changed) unless every health answer is green;
3. take it away (``unit``, ``command`` or ``freeze``; see `conformance.healthdeps`);
4. ask each dependent's health answer, every ``interval``, until it stops being green or its bound passes;
5. put the dependency back, whatever happened, and wait (up to ``restore``) until every answer is green again;
6. snapshot again: it must equal the first.

The record separates what is deterministic (which answers noticed, how each was not green, the snapshots) from
when things happened (``timings``, milliseconds), which never enters a check's observation: it is written as
evidence to ``<evidence>/health-drill/timings.json`` (schema ``health-drill-timings``).
"""

from __future__ import annotations

import json
import math
import re
import secrets
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from conformance import _schemas
from conformance.errors import ProbeError, ProbeTimeout
from conformance.probes.base import Context
from conformance.probes.http import HttpGet, HttpResponse
from conformance.profile import HttpExpectation

SUBDIR = "health-drill"
WATCHDOG = "gates-health-drill-watchdog"
TIMINGS = "timings.json"
TIMINGS_SCHEMA_VERSION = "GatesHealthDrillTimings.v1"
GREEN = "green"

# SIGSTOP/SIGCONT every process listening on a port and all its descendants (a frozen process cannot fork, so
# the set does not change while it is frozen). Prints the number of processes signalled.
_SIGNAL = r"""port="$1"; sig="$2"
roots=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u)
[ -n "$roots" ] || { echo "no process listens on port $port" >&2; exit 3; }
all=""
add() { for p in "$@"; do case " $all " in *" $p "*) ;; *) all="$all $p"; add $(ps -o pid= --ppid "$p"); esac; done; }
add $roots
for p in $all; do
  if [ "$p" -le 1 ] || [ "$p" = "$$" ] || [ "$p" = "$PPID" ]; then echo "refusing to signal pid $p" >&2; exit 4; fi
done
kill -"$sig" $all || exit 5
echo "$all" | wc -w
"""

# A dead man's switch on the target, armed before a dependency is taken away: unless the drill disarms it, it puts
# the dependency back itself after "$2" seconds, so a run that is killed or loses its connection mid-drill does not
# leave the deployment without it. It runs in its own session with its stdio on /dev/null (the bounded host hands a
# command nothing else), so arming returns at once. It is known by the name "$1" (a marker and a token unique to
# the arming).
_ARM = r"""setsid bash -c 'sleep "$1" && eval "$2"' "$1" "$2" "$3" </dev/null >/dev/null 2>&1 &
"""
# Disarm the switch named gates-health-drill-watchdog-"$1" (the name is put together here, so this command's own
# arguments never match it): "disarmed", or "fired" when it is no longer there to disarm.
_DISARM = r"""if pkill -TERM -f -- "gates-health-drill-watchdog-$1"; then echo disarmed; else echo fired; fi
"""

# Whether the processes listening on a port are stopped (state T): "none", "running" or "stopped".
_FROZEN = r"""port="$1"
roots=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u)
[ -n "$roots" ] || { echo none; exit 0; }
for p in $roots; do case "$(ps -o stat= -p "$p")" in T*) echo stopped; exit 0;; esac; done
echo running
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """A health answer the drill asks: a service directly, or a route's upstream through the proxy."""

    name: str
    address: str
    port: int
    expect: HttpExpectation
    host_header: str | None = None

    def request(self) -> HttpGet:
        """The request, as the health checks send it."""
        return HttpGet(
            address=self.address,
            port=self.port,
            path=self.expect.path,
            method=self.expect.method,
            host_header=self.host_header,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DependentSpec:
    """An answer that must stop being green within ``bound_s`` of its dependency going away."""

    answer: str
    bound_s: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DependencySpec:
    """A dependency, how to take it away and put it back, and whose answers must notice."""

    name: str
    method: str
    port: int
    unit: str
    stop: str
    start: str
    dependents: tuple[DependentSpec, ...]


def classify(resp: HttpResponse | None, error: str | None, want: HttpExpectation) -> str:
    """``green`` when the answer is the declared healthy one; else a stable word on how it is not."""
    if resp is None:
        return f"no answer ({error})" if error else "no answer"
    if resp.status != want.status:
        return f"status {resp.status}"
    if want.body is not None and resp.body != want.body.encode():
        return "body differs"
    if want.json:
        try:
            doc = json.loads(resp.body)
        except ValueError:
            return "body is not JSON"
        if not isinstance(doc, dict):
            return "body is not a JSON object"
        for key, value in want.json:
            if key not in doc or doc[key] != value or type(doc[key]) is not type(value):
                return f"{key} is {json.dumps(doc.get(key))}"
    return GREEN


def _error_word(exc: ProbeError) -> str:
    return "timeout" if isinstance(exc, ProbeTimeout) else type(exc).__name__


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthDrillRecord:
    """Per dependency: what the drill did and saw (deterministic), and when (timings, evidence only)."""

    dependencies: tuple[dict[str, Any], ...]
    timings: dict[str, Any]

    def dependency(self, name: str) -> dict[str, Any]:
        """The record of dependency ``name``."""
        for d in self.dependencies:
            if d["dependency"] == name:
                return d
        raise KeyError(name)


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthDependencyDrill:
    """The drill over every declared dependency (one probe: every check of the drill shares it)."""

    answers: tuple[Answer, ...]
    dependencies: tuple[DependencySpec, ...]
    listeners: tuple[tuple[str, int], ...]  # (service, port) of every declared listening service
    restore_s: int
    interval_ms: int
    timeout_s: int
    watchdog_margin_s: int = 30  # how long after the drill's own put-back was due the target's switch fires

    def observe(self, ctx: Context) -> HealthDrillRecord:
        """Run the drill; each dependency is put back before the next is taken away."""
        out: list[dict[str, Any]] = []
        timings: dict[str, Any] = {}
        for dep in self.dependencies:
            one, times = self._one(ctx, dep)
            out.append(one)
            timings[dep.name] = times
        record = HealthDrillRecord(dependencies=tuple(out), timings=timings)
        self._write_timings(ctx, record)
        return record

    # --- observations ---------------------------------------------------------------------------

    def _ask(self, ctx: Context, answer: Answer, *, deadline_s: float | None = None) -> str:
        settings = ctx.settings
        if deadline_s is not None:
            short = max(0.5, min(settings.deadline_s, deadline_s))
            settings = replace(
                settings,
                deadline_s=short,
                read_timeout_s=min(settings.read_timeout_s, short),
                connect_timeout_s=min(settings.connect_timeout_s, short),
            )
        try:
            resp = answer.request().observe(replace(ctx, settings=settings))
        except ProbeError as exc:
            return classify(None, _error_word(exc), answer.expect)
        return classify(resp, None, answer.expect)

    def _answers(self, ctx: Context) -> dict[str, str]:
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="health-drill") as pool:
            got = dict(
                zip(
                    [a.name for a in self.answers],
                    pool.map(lambda a: self._ask(ctx, a), self.answers),
                    strict=True,
                )
            )
        return dict(sorted(got.items()))

    def _listeners(self, ctx: Context) -> dict[int, frozenset[str]]:
        """Port -> the pids listening on it (empty when ``ss`` may not show them)."""
        result = ctx.host.run("ss -Hltnp")
        if result.rc != 0:
            raise ProbeError(f"ss -Hltnp exited {result.rc}: {result.stderr.strip()[:200]}")
        ports: dict[int, frozenset[str]] = {}
        for line in result.stdout.splitlines():
            fields = line.split()
            if len(fields) >= 4 and ":" in fields[3]:
                tail = fields[3].rsplit(":", 1)[1]
                if tail.isdigit():
                    pids = frozenset(re.findall(r"pid=(\d+)", line))
                    ports[int(tail)] = ports.get(int(tail), frozenset()) | pids
        return ports

    def _listening(self, ctx: Context) -> dict[str, bool]:
        ports = self._listeners(ctx)
        return {name: port in ports for name, port in sorted(self.listeners)}

    def _state(self, ctx: Context, dep: DependencySpec) -> str:
        if dep.method == "unit":
            r = ctx.host.run("systemctl show -p ActiveState -p SubState --value -- %s", dep.unit)
            return " ".join(r.stdout.split()) if r.rc == 0 else f"systemctl exited {r.rc}"
        if dep.method == "freeze":
            r = ctx.host.run("bash -c %s gates-frozen %s", _FROZEN, str(dep.port))
            return r.stdout.strip() if r.rc == 0 else f"exited {r.rc}"
        return "listening" if self._listening(ctx).get(dep.name) else "not listening"

    def _snapshot(self, ctx: Context, dep: DependencySpec) -> dict[str, Any]:
        """What the deployment looks like. ``processes`` (the pids behind each declared port) only tells whether a
        process was replaced: it is compared, never reported."""
        health = self._answers(ctx)
        ports = self._listeners(ctx)
        return {
            "health": health,
            "listening": {name: port in ports for name, port in sorted(self.listeners)},
            "dependency": self._state(ctx, dep),
            "processes": {name: sorted(ports.get(port, ())) for name, port in sorted(self.listeners)},
        }

    # --- taking away and putting back ---------------------------------------------------------------

    def _command(self, dep: DependencySpec, *, away: bool) -> str:
        if dep.method == "unit":
            return f"systemctl {'stop' if away else 'start'} -- {shlex.quote(dep.unit)}"
        if dep.method == "freeze":
            return f"bash -c {shlex.quote(_SIGNAL)} gates-freeze {dep.port} {'STOP' if away else 'CONT'}"
        return dep.stop if away else dep.start

    def _arm(self, ctx: Context, dep: DependencySpec) -> tuple[str, int] | str:
        """Arm the target's switch that puts ``dep`` back: (its token, seconds), or why it could not be armed."""
        token = secrets.token_hex(8)
        after_s = self.timeout_s + max((d.bound_s for d in dep.dependents), default=0)
        after_s += math.ceil(ctx.settings.deadline_s) + self.watchdog_margin_s
        back = self._command(dep, away=False)
        try:
            r = ctx.host.run("bash -c %s gates-arm %s %s %s", _ARM, f"{WATCHDOG}-{token}", str(after_s), back)
        except ProbeError as exc:
            return f"cannot arm the switch that puts {dep.name} back on the target: {exc}"
        if r.rc != 0:
            return f"cannot arm the switch that puts {dep.name} back on the target: exit {r.rc} {r.stderr[-200:]}"
        return token, after_s

    def _disarm(self, ctx: Context, token: str) -> str:
        """``disarmed``; ``fired`` when the switch already put the dependency back; or why it is not known."""
        try:
            r = ctx.host.run("bash -c %s gates-disarm %s", _DISARM, token)
        except ProbeError as exc:
            return f"unknown: {exc}"
        return r.stdout.strip() or f"unknown: exit {r.rc}"

    def _run(self, ctx: Context, dep: DependencySpec, *, away: bool) -> dict[str, Any]:
        command = self._command(dep, away=away)
        shown = {"unit": command, "freeze": f"SIG{'STOP' if away else 'CONT'} to what listens on :{dep.port}"}
        try:
            r = ctx.host.run("timeout %s bash -c %s", str(self.timeout_s), command)
        except ProbeError as exc:
            return {"command": shown.get(dep.method, command), "exitCode": None, "error": str(exc)}
        step: dict[str, Any] = {"command": shown.get(dep.method, command), "exitCode": r.rc}
        if r.rc != 0:
            step["stderrTail"] = r.stderr[-400:]
        return step

    # --- one dependency ---------------------------------------------------------------------------

    def _watch(self, ctx: Context, answer: Answer, bound_s: int, t0: float) -> tuple[str, float | None, int]:
        """Ask until the answer stops being green or the bound passes: (how it ended, ms when asked, asks)."""
        asks = 0
        while True:
            asked = time.monotonic()
            left = bound_s - (asked - t0)
            if left <= 0:
                return GREEN, None, asks
            got = self._ask(ctx, answer, deadline_s=left + ctx.settings.deadline_s)
            asks += 1
            if got != GREEN:
                return got, (asked - t0) * 1000.0, asks
            time.sleep(max(0.0, self.interval_ms / 1000.0 - (time.monotonic() - asked)))

    def _recovered(self, ctx: Context, answer: Answer, t0: float) -> tuple[str, float | None]:
        while True:
            asked = time.monotonic()
            got = self._ask(ctx, answer)
            if got == GREEN:
                return GREEN, (asked - t0) * 1000.0
            if time.monotonic() - t0 >= self.restore_s:
                return got, None
            time.sleep(max(0.0, self.interval_ms / 1000.0 - (time.monotonic() - asked)))

    def _one(self, ctx: Context, dep: DependencySpec) -> tuple[dict[str, Any], dict[str, Any]]:
        by_name = {a.name: a for a in self.answers}
        before = self._snapshot(ctx, dep)
        record: dict[str, Any] = {"dependency": dep.name, "method": dep.method, "before": _shown(before)}
        not_green = {k: v for k, v in before["health"].items() if v != GREEN}
        if not_green:
            record["refused"] = f"health not green before the drill: {not_green}"
            return record, {}
        armed = self._arm(ctx, dep)
        if isinstance(armed, str):
            record["refused"] = armed
            return record, {}
        token, after_s = armed
        taken = self._run(ctx, dep, away=True)
        record["takeAway"] = taken
        t0 = time.monotonic()
        times: dict[str, Any] = {"noticedMs": {}, "asks": {}, "greenAgainMs": {}}
        noticed: dict[str, dict[str, Any]] = {}
        try:
            if taken.get("exitCode") == 0:
                with ThreadPoolExecutor(max_workers=4, thread_name_prefix="health-drill") as pool:
                    watched = {
                        d.answer: pool.submit(self._watch, ctx, by_name[d.answer], d.bound_s, t0)
                        for d in dep.dependents
                    }
                    for name, fut in watched.items():
                        got, at_ms, asks = fut.result()
                        noticed[name] = {"answer": got, "noticed": got != GREEN}
                        times["noticedMs"][name] = None if at_ms is None else round(at_ms)
                        times["asks"][name] = asks
        finally:
            record["watchdog"] = {"afterSeconds": after_s, "state": self._disarm(ctx, token)}
            put = self._run(ctx, dep, away=False)
        record["noticed"] = noticed
        record["putBack"] = put
        t1 = time.monotonic()
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="health-drill") as pool:
            back = {a.name: pool.submit(self._recovered, ctx, a, t1) for a in self.answers}
            recovered = {name: fut.result() for name, fut in back.items()}
        record["greenAgain"] = {name: got for name, (got, _) in sorted(recovered.items())}
        times["greenAgainMs"] = {
            name: None if ms is None else round(ms) for name, (_, ms) in sorted(recovered.items())
        }
        after = self._snapshot(ctx, dep)
        record["after"] = _shown(after)
        record["differences"] = differences(
            before, after, replaced_ok=dep.name if dep.method != "freeze" else ""
        )
        return record, times

    def _write_timings(self, ctx: Context, record: HealthDrillRecord) -> None:
        if ctx.evidence_dir is None:
            return
        doc = {
            "schemaVersion": TIMINGS_SCHEMA_VERSION,
            "boundsSeconds": {d.name: {p.answer: p.bound_s for p in d.dependents} for d in self.dependencies},
            "restoreSeconds": self.restore_s,
            "intervalMilliseconds": self.interval_ms,
            "dependencies": record.timings,
        }
        _schemas.validate(doc, "health-drill-timings", source=TIMINGS)
        path = ctx.evidence_dir / SUBDIR / TIMINGS
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def differences(before: dict[str, Any], after: dict[str, Any], *, replaced_ok: str = "") -> list[str]:
    """What differs between two snapshots, one line each. ``replaced_ok``: a service whose process may be another
    one afterwards (the dependency itself, when it was stopped and started rather than frozen)."""
    out = []
    for part in ("health", "listening"):
        keys = sorted(set(before[part]) | set(after[part]))
        out += [
            f"{part} {k}: {before[part].get(k)} -> {after[part].get(k)}"
            for k in keys
            if before[part].get(k) != after[part].get(k)
        ]
    if before["dependency"] != after["dependency"]:
        out.append(f"dependency: {before['dependency']} -> {after['dependency']}")
    was, now = before.get("processes", {}), after.get("processes", {})
    out += [
        f"processes {k}: replaced (another process listens)"
        for k in sorted(set(was) & set(now))
        if was[k] and now[k] and was[k] != now[k] and k != replaced_ok
    ]
    return out


def _shown(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A snapshot as a report shows it: without pids, which differ from run to run."""
    return {k: v for k, v in snapshot.items() if k != "processes"}
