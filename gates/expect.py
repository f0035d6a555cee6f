"""A certification compared with a committed verdict table (`gates demo --expect FILE`).

Two table shapes are read, the ones `tests/upstream/*_verdicts.yaml` use:

- flat (``gates: {gate: verdict}``, ``checks: {id: {expected: status}}``, optional ``races`` naming verdicts a
  check or gate may also show, each with its upstream cause);
- per gate (``gates: {gate: {verdict: V, checks: {id: S}}}``, where ``V`` and ``S`` are a status or
  ``{status, upstream, reason}``).

Observed: each gate's verdict from its report (the file its definition names), and each check instance's status
(flat tables: from the run's results, plus required checks no instance matched, as the reports list them; per-gate
tables: from the gate reports' check rows). The comparison is exact: a verdict the table does not allow, a check
the table does not list, and a listed check the run did not have are all differences.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.errors import ConfigError
from conformance.yamlsource import load_yaml
from gates.gate import load_gate

STATUSES = frozenset({"pass", "fail", "error", "not_run", "skip", "incomplete", "waived"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectation:
    """What a table allows: per gate and per check instance, the set of verdicts."""

    source: str
    gates: dict[str, frozenset[str]]
    checks: dict[str, frozenset[str]]
    per_gate: bool  # check statuses are read from the gate reports (else from the run's results)


def _status(value: Any, doc_source: str, where: str, locate: Any) -> str:
    status = value.get("status", value.get("expected")) if isinstance(value, dict) else value
    if status not in STATUSES:
        raise ConfigError(
            f"{where}: {status!r} is not one of {', '.join(sorted(STATUSES))}",
            source=doc_source,
            location=locate,
        )
    return str(status)


def load(path: Path) -> Expectation:
    """Read a verdict table; `ConfigError` (exit 2) naming the file and place when it is not one."""
    doc = load_yaml(path)
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("gates"), dict) or not data["gates"]:
        raise ConfigError(
            "not a verdict table: no 'gates' mapping", source=doc.source, location=doc.locate(())
        )
    gates: dict[str, frozenset[str]] = {}
    checks: dict[str, frozenset[str]] = {}
    per_gate = "checks" not in data
    for gate, entry in data["gates"].items():
        at = doc.locate(("gates", gate))
        if per_gate:
            if not isinstance(entry, dict) or "verdict" not in entry:
                raise ConfigError(
                    f"gates.{gate}: expected {{verdict, checks}}", source=doc.source, location=at
                )
            gates[gate] = frozenset({_status(entry["verdict"], doc.source, f"gates.{gate}.verdict", at)})
            for check_id, status in (entry.get("checks") or {}).items():
                where = doc.locate(("gates", gate, "checks", check_id))
                checks[check_id] = frozenset({_status(status, doc.source, check_id, where)})
        else:
            gates[gate] = frozenset({_status(entry, doc.source, f"gates.{gate}", at)})
    if not per_gate:
        if not isinstance(data["checks"], dict):
            raise ConfigError(
                "'checks' must be a mapping", source=doc.source, location=doc.locate(("checks",))
            )
        for check_id, entry in data["checks"].items():
            where = doc.locate(("checks", check_id))
            checks[check_id] = frozenset({_status(entry, doc.source, check_id, where)})
        for name, race in (data.get("races") or {}).items():
            where = doc.locate(("races", name))
            if not isinstance(race, dict):
                raise ConfigError(f"races.{name}: expected a mapping", source=doc.source, location=where)
            also = frozenset(
                _status(s, doc.source, f"races.{name}.also", where) for s in race.get("also") or ()
            )
            for check_id in race.get("checks") or ():
                if check_id not in checks:
                    raise ConfigError(f"races.{name}: {check_id} is not a listed check", source=doc.source,
                                      location=where)  # fmt: skip
                checks[check_id] |= also
            for gate, extra in (race.get("gates") or {}).items():
                if gate not in gates:
                    raise ConfigError(f"races.{name}: {gate} is not a listed gate", source=doc.source,
                                      location=where)  # fmt: skip
                gates[gate] |= frozenset(_status(s, doc.source, f"races.{name}.gates", where) for s in extra)
    for gate in gates:
        try:
            load_gate(gate)
        except ConfigError as exc:
            raise ConfigError(f"gates.{gate}: {exc.message}", source=doc.source,
                              location=doc.locate(("gates", gate))) from exc  # fmt: skip
    return Expectation(source=doc.source, gates=gates, checks=checks, per_gate=per_gate)


def _report(out: Path, gate: str) -> dict[str, Any] | None:
    path = out / "gates" / load_gate(gate).report
    if not path.is_file():
        return None
    body = json.loads(path.read_text())
    return body if isinstance(body, dict) else None


def observe(out: Path, expectation: Expectation) -> tuple[dict[str, str], dict[str, str]]:
    """Gate verdicts and check statuses of the certification written to ``out``."""
    gates: dict[str, str] = {}
    checks: dict[str, str] = {}
    reports = {gate: _report(out, gate) for gate in expectation.gates}
    for gate, body in reports.items():
        if body is None:
            continue
        verdict = body.get("verdict")
        gates[gate] = str(verdict["status"] if isinstance(verdict, dict) else body.get("status"))
        if expectation.per_gate:
            checks.update({str(c["id"]): str(c["status"]) for c in body.get("checks") or [] if "status" in c})
    if not expectation.per_gate:
        results = out / "run" / "results.ndjson"
        lines = results.read_text().splitlines() if results.is_file() else []
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:  # a torn last line of a killed run
                continue
            if isinstance(row, dict) and "id" in row and "outcome" in row:
                checks[str(row["id"])] = str(row["outcome"])
        for body in (b for b in reports.values() if b is not None):
            for issue in body.get("blockingIssues") or []:  # a required check no instance matched
                check_id = issue.get("checkId") if isinstance(issue, dict) else None
                if check_id and check_id not in checks and not str(check_id).startswith("gate.verdict."):
                    checks[str(check_id)] = str(issue.get("status"))
    return gates, checks


def differences(expectation: Expectation, gates: dict[str, str], checks: dict[str, str]) -> list[str]:
    """Every way the observed verdicts depart from the table, one line each (empty: they equal it)."""
    out: list[str] = []

    def allowed(values: frozenset[str]) -> str:
        return " or ".join(sorted(values))

    for gate, want in expectation.gates.items():
        got = gates.get(gate)
        if got is None:
            out.append(f"gate {gate}: no report was written (table: {allowed(want)})")
        elif got not in want:
            out.append(f"gate {gate}: {got} (table: {allowed(want)})")
    for check_id, want in sorted(expectation.checks.items()):
        got = checks.get(check_id)
        if got is None:
            out.append(f"{check_id}: not in the run (table: {allowed(want)})")
        elif got not in want:
            out.append(f"{check_id}: {got} (table: {allowed(want)})")
    out += [f"{c}: {s} (not in the table)" for c, s in sorted(checks.items()) if c not in expectation.checks]
    return out
