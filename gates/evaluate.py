"""Decide a gate from check results. Pure: no I/O, so old results can be re-evaluated offline."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conformance.waivers import Waiver, expired_waiver, live_waiver
from gates.gate import Expansion, Gate

STATUS_ORDER = ("fail", "error", "skip", "not_run")  # "waived" is counted apart: it blocks nothing


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    """The report body of one gate: checks, blocking issues and the verdict."""

    checks: list[dict[str, Any]]
    blocking: list[dict[str, Any]]
    verdict: dict[str, Any]

    @property
    def status(self) -> str:
        """pass, fail or incomplete."""
        return str(self.verdict["status"])


def _entry(instance_id: str, record: Mapping[str, Any] | None) -> dict[str, Any]:
    if record is None:
        return {
            "id": instance_id,
            "ok": False,
            "status": "not_run",
            "failureCode": "not_run",
            "detail": {"message": "the check did not run (no result was recorded)", "remediation": None},
        }
    status = str(record["outcome"])
    if status == "waived":  # the check run's view; whether a waiver applies is decided here, again
        status = "fail"
    detail: dict[str, Any] = {
        "title": record.get("title", ""),
        "severity": record.get("severity", "critical"),
        "message": record.get("message", ""),
        "observed": record.get("observed"),
        "expected": record.get("expected"),
        "remediation": record.get("remediation"),
    }
    entry: dict[str, Any] = {"id": instance_id, "ok": status == "pass", "status": status, "detail": detail}
    if status != "pass":
        entry["failureCode"] = str(record.get("reasonCode") or status)
    return entry


def _unmatched(check_id: str, reason: str) -> dict[str, Any]:
    """The report entry of a required check the profile gives no target: not run, counted, with its reason."""
    if reason == "requires_systemd":
        message = (
            f"{check_id} reads systemd units or timers, and the profile says no service manager runs this "
            "deployment (processManager: none), so it cannot be certified here"
        )
        remediation = (
            "Certify this gate on the host where systemd runs the services (--set process_manager=systemd), "
            "or mark the requirement optional in the gate file."
        )
    else:
        message = f"the profile declares no target for required check {check_id}"
        remediation = (
            "Declare the part of the deployment this check certifies, or mark the requirement optional in the "
            "gate file."
        )
    return {
        "id": check_id,
        "ok": False,
        "status": "not_run",
        "failureCode": reason,
        "detail": {"message": message, "remediation": remediation},
    }


def _waive(entry: dict[str, Any], waivers: Sequence[Waiver], today: dt.date) -> dict[str, Any]:
    """A failure a live waiver covers becomes ``waived`` (with the waiver); a failure whose waiver
    lapsed stays ``fail`` and names it. Anything but a failure (an error, a check that did not run)
    is never touched."""
    if entry["status"] not in ("fail", "waived"):
        return entry
    waiver = live_waiver(waivers, entry["id"], today)
    if waiver is not None:
        return {**entry, "ok": False, "status": "waived", "waiver": waiver.to_json()}
    entry = {k: v for k, v in entry.items() if k != "waiver"}
    entry["status"] = "fail"  # a result the check run waived under a waiver that no longer applies
    lapsed = expired_waiver(waivers, entry["id"], today)
    if lapsed is not None:
        entry["expiredWaiver"] = lapsed.to_json()
    return entry


def evaluate(
    gate: Gate,
    expansion: Expansion,
    results: Mapping[str, Mapping[str, Any]],
    *,
    waivers: Sequence[Waiver] | None = None,
    today: dt.date | None = None,
) -> Evaluation:
    """Fail if any required instance failed; else incomplete if any did not pass or nothing was required.

    With ``waivers`` (a waivers file was given), a failure a waiver live on ``today`` covers is
    ``waived`` and blocks nothing, and the verdict counts ``waivedChecks``.
    """
    checks = [_entry(inst.id, results.get(inst.id)) for inst in expansion.instances]
    if waivers is not None:
        day = today or dt.datetime.now(dt.UTC).date()
        checks = [_waive(c, waivers, day) for c in checks]
    blocking = [
        {
            "id": f"{gate.name}:{c['id']}",
            "checkId": c["id"],
            "status": c["status"],
            "failureCode": c["failureCode"],
            "reason": c["detail"]["message"],
            "remediation": c["detail"].get("remediation"),
            **({"expiredWaiver": c["expiredWaiver"]} if "expiredWaiver" in c else {}),
        }
        for c in checks
        if not c["ok"] and c["status"] != "waived"
    ]
    for check_id in expansion.unmatched:
        entry = _unmatched(check_id, expansion.reason(check_id))
        checks.append(entry)
        blocking.append(
            {
                "id": f"{gate.name}:{check_id}",
                "checkId": check_id,
                "status": "not_run",
                "failureCode": entry["failureCode"],
                "reason": entry["detail"]["message"],
                "remediation": entry["detail"]["remediation"],
            }
        )
    counts = {s: sum(1 for c in checks if c["status"] == s) for s in ("pass", *STATUS_ORDER)}
    if counts["fail"]:
        status = "fail"
    elif blocking or not expansion.instances:
        status = "incomplete"
    else:
        status = "pass"
    verdict = {
        "ok": status == "pass",
        "status": status,
        "totalChecks": len(checks),
        "passedChecks": counts["pass"],
        "failedChecks": counts["fail"],
        "erroredChecks": counts["error"],
        "skippedChecks": counts["skip"],
        "notRunChecks": counts["not_run"],
    }
    if waivers is not None:
        verdict["waivedChecks"] = sum(1 for c in checks if c["status"] == "waived")
    blocking.sort(key=lambda b: b["id"])
    return Evaluation(checks=checks, blocking=blocking, verdict=verdict)


def waiver_findings(
    waivers: Sequence[Waiver], evaluations: Iterable[Evaluation], today: dt.date
) -> list[dict[str, Any]]:
    """How each waiver stood in this run, in file order: ``applied`` (it waived a failure),
    ``expired`` (it lapsed: what it covers is judged as if it were not there), or ``stale`` -- live but
    idle: it matches no check of the run (``matches_no_check``), every check it covers passes
    (``check_passes``), or it covers only checks that errored or did not run, which no waiver
    changes (``covers_no_failure``). ``checks`` are the instance ids it covers."""
    statuses: dict[str, str] = {}
    for ev in evaluations:
        for c in ev.checks:
            statuses.setdefault(str(c["id"]), str(c["status"]))
    out = []
    for w in waivers:
        covered = sorted(i for i in statuses if w.covers(i))
        finding = None
        if not w.live(today):
            state = "expired"
        elif any(statuses[i] == "waived" for i in covered):
            state = "applied"
        else:
            state = "stale"
            if not covered:
                finding = "matches_no_check"
            elif all(statuses[i] == "pass" for i in covered):
                finding = "check_passes"
            else:
                finding = "covers_no_failure"
        out.append({"waiver": w.to_json(), "state": state, "finding": finding, "checks": covered})
    return out


# Failure codes of checks the run was not allowed to perform (a drill, a paid call): not run, never a
# finding about the deployment.
NOT_ALLOWED = ("drill_not_allowed", "spend_not_allowed")


def exit_code(statuses: list[str]) -> int:
    """0 when every gate passed, 1 when any failed, else 3 (incomplete/undetermined)."""
    if any(s == "fail" for s in statuses):
        return 1
    if statuses and all(s == "pass" for s in statuses):
        return 0
    return 3


@dataclass(frozen=True, slots=True, kw_only=True)
class Component:
    """A component gate's outcome as a roll-up sees it: its evaluation and the report it wrote."""

    gate: str
    report: str
    evaluation: Evaluation
    artifact_hash: str
    supplied: str | None = None  # the path of a verified report given with --supplied, not run here


def evaluate_rollup(
    gate: Gate, components: list[Component], applicable: tuple[str, ...] | None = None
) -> Evaluation:
    """Fail if any applicable component gate failed; else incomplete unless every one passed.

    Each applicable component (all of them unless ``applicable`` narrows them, e.g. to the
    profile's serving mode) is one entry in ``checks``; every blocking issue of every component
    is repeated, prefixed with the roll-up and component names, so the roll-up names them all.
    """
    by_name = {c.gate: c for c in components}
    checks: list[dict[str, Any]] = []
    blocking: list[dict[str, Any]] = []
    for name in gate.components if applicable is None else applicable:
        comp = by_name.get(name)
        entry_id = f"gate.verdict.pass[{name}]"
        if comp is None:
            checks.append(
                {
                    "id": entry_id,
                    "ok": False,
                    "status": "not_run",
                    "failureCode": "gate_not_run",
                    "detail": {"message": f"component gate {name} did not run", "remediation": None},
                }
            )
            blocking.append(
                {
                    "id": f"{gate.name}:{name}",
                    "checkId": entry_id,
                    "status": "not_run",
                    "failureCode": "gate_not_run",
                    "reason": f"component gate {name} did not run",
                    "remediation": f"Run the {name} gate together with {gate.name}.",
                }
            )
            continue
        status = comp.evaluation.status
        v = comp.evaluation.verdict
        message = (
            f"{name}: {status} ({v['passedChecks']}/{v['totalChecks']} checks passed, {v['failedChecks']} "
            f"failed, {v['erroredChecks']} errored, {v['skippedChecks']} skipped, {v['notRunChecks']} not run)"
        )
        entry: dict[str, Any] = {
            "id": entry_id,
            "ok": status == "pass",
            "status": {"pass": "pass", "fail": "fail"}.get(status, "not_run"),
            "detail": {
                "title": f"Component gate {name} passes",
                "message": message,
                "observed": {
                    "status": status,
                    "report": comp.report,
                    "artifactHash": comp.artifact_hash,
                    **({"supplied": comp.supplied} if comp.supplied else {}),
                },
                "expected": {"status": "pass"},
                "remediation": None if status == "pass" else f"Resolve the blocking issues of {comp.report}.",
            },
        }
        if status != "pass":
            entry["failureCode"] = f"gate_{status}"
        checks.append(entry)
        for b in comp.evaluation.blocking:
            blocking.append({**b, "id": f"{gate.name}:{b['id']}"})
    counts = {s: sum(1 for c in checks if c["status"] == s) for s in ("pass", *STATUS_ORDER)}
    if counts["fail"]:
        status = "fail"
    elif counts["pass"] != len(checks) or not checks:
        status = "incomplete"
    else:
        status = "pass"
    verdict = {
        "ok": status == "pass",
        "status": status,
        "totalChecks": len(checks),
        "passedChecks": counts["pass"],
        "failedChecks": counts["fail"],
        "erroredChecks": counts["error"],
        "skippedChecks": counts["skip"],
        "notRunChecks": counts["not_run"],
    }
    blocking.sort(key=lambda b: b["id"])
    return Evaluation(checks=checks, blocking=blocking, verdict=verdict)
