"""The deploy/rollback drill: exercise the target's own deploy and rollback commands, watch, restore.

This is the one probe that changes the target, so it only runs when the run allows drills, after
every other check. It snapshots the release state first (``current``, release directories, unit
states, registry rows), then:

1. deploys the candidate release (must pass the health gate and switch ``current``);
2. deploys the broken release (the health gate must fail and ``current`` return to the candidate);
3. rolls back, by name, to the release that was current before the drill;

while a watcher on the target samples ``current`` continuously (it must always resolve to a complete
release). Whatever happens, it then restores what it changed -- ``current`` (restarting the units
when it had to switch it back), release directories it created, registry rows -- and takes the
snapshot again, so the report can show before, after and every difference.
"""

from __future__ import annotations

import base64
import binascii
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from conformance.errors import ProbeError
from conformance.probes.base import Context
from conformance.probes.http import HttpGet
from conformance.probes.pgsession import conninfo

_WATCHED_RUN = r"""cur="$1"; marker="$2"; limit="$3"; cmd="$4"
log=$(mktemp /tmp/gates-drill.XXXXXX) && out=$(mktemp /tmp/gates-drill.XXXXXX) && err=$(mktemp /tmp/gates-drill.XXXXXX) \
  || exit 97
trap 'rm -f "$log" "$out" "$err"' EXIT
( while :; do
    t=$(readlink -- "$cur" 2>/dev/null) || t="<missing>"
    if [ -e "$cur/$marker" ]; then echo "ok $t"; else echo "incomplete $t"; fi
  done ) >"$log" 2>/dev/null &
watcher=$!
sleep 0.05
timeout "$limit" bash -c "$cmd" >"$out" 2>"$err"
rc=$?
sleep 0.05
kill "$watcher" 2>/dev/null; wait "$watcher" 2>/dev/null
echo "rc=$rc"
echo "samples=$(wc -l <"$log")"
uniq -c "$log" | head -n 200 | while read -r n state target; do echo "run=$n $state $target"; done
echo "stdout=$(tail -c 3000 "$out" | base64 -w0)"
echo "stderr=$(tail -c 3000 "$err" | base64 -w0)"
"""

_SNAPSHOT = r"""cur="$1"; releases="$2"; marker="$3"; shift 3
echo "current=$(readlink -f -- "$cur" 2>/dev/null)"
for d in "$releases"/*; do [ -e "$d" ] && echo "release=$(basename -- "$d")"; done
if [ $# -gt 0 ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl show -p Id,ActiveState,SubState,UnitFileState -- "$@" | tr '\n' ' ' | sed 's/  */ /g; s/ Id=/\nId=/g'
  echo
fi
"""

_RESTORE = r"""cur="$1"; target="$2"; shift 2
ln -sfn -- "$target" "$cur.gates-restore.$$" && mv -T -- "$cur.gates-restore.$$" "$cur" || exit 3
if [ $# -gt 0 ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl restart -- "$@"; fi
"""

HEALTH_WAIT_S = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthTarget:
    """A service whose health answer the drill re-checks after every step."""

    name: str
    address: str
    port: int
    path: str
    status: int
    body: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DrillRecord:
    """Everything the drill did and saw, as plain data for checks and the report."""

    before: dict[str, Any]
    after: dict[str, Any]
    steps: tuple[dict[str, Any], ...]
    restore: dict[str, Any]
    differences: tuple[str, ...]

    def step(self, name: str) -> dict[str, Any]:
        """The record of step ``name`` (deploy_candidate, deploy_broken, rollback_named)."""
        for s in self.steps:
            if s["step"] == name:
                return s
        raise KeyError(name)


class _Registry:
    """The release registry table, reached through the target's dialer."""

    def __init__(self, conninfo: str, table: str, where: str) -> None:
        self.conninfo, self.table, self.where = conninfo, table, where

    def _run(self, fn: Callable[[psycopg.Cursor[Any]], Any]) -> Any:
        try:
            with psycopg.connect(self.conninfo, autocommit=True) as conn, conn.cursor() as cur:
                return fn(cur)
        except psycopg.Error as exc:
            raise ProbeError(f"release registry {self.where}: {exc}") from exc

    def rows(self) -> list[dict[str, Any]]:
        sql = f"SELECT release_id, commit_sha, status, deployed_at FROM {self.table} ORDER BY release_id"
        return [
            {
                "release_id": r[0],
                "commit_sha": r[1],
                "status": r[2],
                "deployed_at": r[3].isoformat() if r[3] else None,
            }
            for r in self._run(lambda cur: cur.execute(sql).fetchall())
        ]

    def delete(self, release_id: str) -> None:
        self._run(lambda cur: cur.execute(f"DELETE FROM {self.table} WHERE release_id = %s", (release_id,)))

    def put(self, row: dict[str, Any]) -> None:
        sql = f"UPDATE {self.table} SET commit_sha = %s, status = %s, deployed_at = %s WHERE release_id = %s"
        self._run(
            lambda cur: cur.execute(
                sql, (row["commit_sha"], row["status"], row["deployed_at"], row["release_id"])
            )
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DeployRollbackDrill:
    """Run the drill described by a profile's ``release.drill`` (see the module docstring)."""

    current: str
    releases: str
    deploy: str
    rollback: str
    candidate: str
    broken: str
    marker: str
    units: tuple[str, ...]
    timeout_s: int
    registry_address: str
    registry_port: int
    registry_db: str
    registry_user: str
    registry_password: str | None
    registry_table: str
    health: tuple[HealthTarget, ...]

    # --- observation ----------------------------------------------------------------------

    def observe(self, ctx: Context) -> DrillRecord:
        """Snapshot, run the three steps, restore, snapshot again."""
        if not self.candidate or not self.broken:
            raise ProbeError(
                "the profile names no drill releases: set drill.candidate (a release that passes the health "
                "gate) and drill.broken (one that fails it)"
            )
        self._preflight(ctx)
        address, port = ctx.dial(self.registry_address, self.registry_port)
        reg = _Registry(
            conninfo(address, port, self.registry_db, self.registry_user, self.registry_password, 5.0),
            self.registry_table,
            f"{self.registry_db}.{self.registry_table}",
        )
        before = self._snapshot(ctx, reg)
        original = before["current"].rsplit("/", 1)[-1]
        if not before["current"].startswith(self.releases.rstrip("/") + "/"):
            raise ProbeError(
                f"{self.current} does not point into {self.releases} before the drill: {before['current']}"
            )
        if original in (self.candidate, self.broken):
            raise ProbeError(f"the drill releases must differ from the current release {original}")
        steps: list[dict[str, Any]] = []
        restore: dict[str, Any] = {}
        try:
            plan = (
                ("deploy_candidate", self.deploy, self.candidate),
                ("deploy_broken", self.deploy, self.broken),
                ("rollback_named", self.rollback, original),
            )
            for name, template, release in plan:
                command = template.replace("{release}", shlex.quote(release))
                steps.append(self._step(ctx, reg, name, command, release))
        finally:
            restore = self._restore(ctx, reg, before)
        after = self._snapshot(ctx, reg)
        after["healthy"] = self._healthy(ctx)
        before_cmp = {k: v for k, v in before.items() if k != "healthy"}
        after_cmp = {k: v for k, v in after.items() if k != "healthy"}
        return DrillRecord(
            before=before,
            after=after,
            steps=tuple(steps),
            restore=restore,
            differences=tuple(_differences(before_cmp, after_cmp)),
        )

    def _preflight(self, ctx: Context) -> None:
        """Refuse to start (changing nothing) when the deploy or rollback program is missing or not executable."""
        for what, template in (("deploy", self.deploy), ("rollback", self.rollback)):
            try:
                program = shlex.split(template)[0]
            except (ValueError, IndexError):
                raise ProbeError(f"the drill's {what} command {template!r} cannot be parsed") from None
            found = ctx.host.run(
                "bash -c %s gates-preflight %s", 'type -P -- "$1" || type -t -- "$1"', program
            )
            if found.rc != 0 or not found.stdout.strip():
                raise ProbeError(
                    f"the drill's {what} command {program!r} is not found or not executable on the target; "
                    "nothing was changed. Set the profile's drill commands to the target's own tooling"
                )

    def _step(self, ctx: Context, reg: _Registry, name: str, command: str, release: str) -> dict[str, Any]:
        started = time.monotonic()
        result = ctx.host.run(
            "bash -c %s gates-drill %s %s %s %s",
            _WATCHED_RUN,
            self.current,
            self.marker,
            str(self.timeout_s),
            command,
        )
        fields: dict[str, str] = {}
        runs: list[dict[str, Any]] = []
        for line in result.stdout.splitlines():
            key, sep, value = line.partition("=")
            if key == "run" and sep:
                count, state, target = [*value.split(" ", 2), "", ""][:3]
                runs.append(
                    {"samples": int(count) if count.isdigit() else 0, "state": state, "target": target}
                )
            elif sep and key in ("rc", "samples", "stdout", "stderr"):
                fields[key] = value
        if "rc" not in fields:
            raise ProbeError(f"the drill could not run {command!r}: {result.stderr.strip() or result.rc}")
        code = int(fields["rc"])
        if code in (124, 137):
            raise ProbeError(f"{command!r} did not finish within {self.timeout_s}s")
        why = _b64(fields.get("stderr", "")).strip().splitlines()
        if code in (126, 127) and any(line.startswith("bash: ") for line in why[:3]):
            # the wrapper's shell could not find or execute the command itself: nothing ran, nothing to observe
            # (a 126/127 from inside a command that did run is that command's own failure, observed as such)
            raise ProbeError(
                f"{command!r} could not be run (exit {code}: {'not executable' if code == 126 else 'not found'})"
                + (f": {why[0][:300]}" if why else "")
                + "; set the profile's drill deploy/rollback commands to the target's own tooling"
            )
        record: dict[str, Any] = {
            "step": name,
            "release": release,
            "command": command,
            "exitCode": code,
            "seconds": round(time.monotonic() - started, 3),
            "stdoutTail": _b64(fields.get("stdout", "")),
            "stderrTail": _b64(fields.get("stderr", "")),
            "watch": {"samples": int(fields.get("samples", "0") or 0), "runs": runs},
        }
        now = self._snapshot(ctx, reg)
        record["current"] = now["current"]
        record["registry"] = {r["release_id"]: r["status"] for r in now["registry"]}
        record["health"] = self._healthy(ctx)
        return record

    # --- snapshots ------------------------------------------------------------------------

    def _snapshot(self, ctx: Context, reg: _Registry) -> dict[str, Any]:
        result = ctx.host.run(
            "bash -c %s gates-snapshot %s %s %s " + " ".join(["%s"] * len(self.units)),
            _SNAPSHOT, self.current, self.releases, self.marker, *self.units,
        )  # fmt: skip
        if result.rc != 0:
            raise ProbeError(f"cannot snapshot the release state: {result.stderr.strip() or result.rc}")
        current, releases, units = "", [], {}
        for line in result.stdout.splitlines():
            if line.startswith("current="):
                current = line[len("current=") :]
            elif line.startswith("release="):
                releases.append(line[len("release=") :])
            elif line.startswith("Id="):
                props = dict(p.split("=", 1) for p in line.split() if "=" in p)
                units[props.pop("Id")] = props
        return {
            "current": current,
            "releases": sorted(releases),
            "units": dict(sorted(units.items())),
            "registry": reg.rows(),
        }

    # --- restore --------------------------------------------------------------------------

    def _restore(self, ctx: Context, reg: _Registry, before: dict[str, Any]) -> dict[str, Any]:
        actions: list[str] = []
        now = self._snapshot(ctx, reg)
        if now["current"] != before["current"]:
            active = [u for u, p in before["units"].items() if p.get("ActiveState") == "active"]
            result = ctx.host.run(
                "bash -c %s gates-restore %s %s " + " ".join(["%s"] * len(active)),
                _RESTORE, self.current, before["current"], *active,
            )  # fmt: skip
            actions.append(f"switched {self.current} back to {before['current']} (exit {result.rc})")
            if active:
                actions.append(f"restarted {', '.join(active)}")
        for name in sorted(set(now["releases"]) - set(before["releases"])):
            path = f"{self.releases.rstrip('/')}/{name}"
            if path != before["current"]:
                result = ctx.host.run("rm -rf -- %s", path)
                actions.append(f"removed release directory {name} (exit {result.rc})")
        old = {r["release_id"]: r for r in before["registry"]}
        new = {r["release_id"]: r for r in now["registry"]}
        for rid in sorted(set(new) - set(old)):
            reg.delete(rid)
            actions.append(f"deleted registry row {rid}")
        for rid in sorted(set(old) & set(new)):
            if old[rid] != new[rid]:
                reg.put(old[rid])
                actions.append(f"restored registry row {rid} to status {old[rid]['status']}")
        return {"actions": actions}

    # --- health ---------------------------------------------------------------------------

    def _healthy(self, ctx: Context) -> dict[str, Any]:
        """Each health target's answer, waiting up to HEALTH_WAIT_S for restarted services to come up."""
        deadline = time.monotonic() + HEALTH_WAIT_S
        while True:
            answers = {h.name: _answer(ctx, h) for h in self.health}
            if all(a == "ok" for a in answers.values()) or time.monotonic() > deadline:
                return dict(sorted(answers.items()))
            time.sleep(0.25)


def _answer(ctx: Context, h: HealthTarget) -> str:
    try:
        resp = HttpGet(address=h.address, port=h.port, path=h.path).observe(ctx)
    except ProbeError as exc:
        return f"error: {exc}"
    if resp.status != h.status:
        return f"status {resp.status}"
    if h.body is not None and resp.body != h.body.encode():
        return f"body {resp.body_preview(40)!r}"
    return "ok"


def _b64(value: str) -> str:
    try:
        return base64.b64decode(value).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""


def _differences(before: dict[str, Any], after: dict[str, Any], path: str = "") -> list[str]:
    out: list[str] = []
    for key in sorted(set(before) | set(after)):
        where = f"{path}.{key}" if path else key
        b, a = before.get(key), after.get(key)
        if isinstance(b, dict) and isinstance(a, dict):
            out.extend(_differences(b, a, where))
        elif b != a:
            out.append(f"{where}: {b!r} -> {a!r}")
    return out
