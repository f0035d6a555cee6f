"""Gate reports: build, hash, validate and write; and re-verify a written report."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from conformance import _schemas, clock
from conformance.canonical import canonical_hash
from conformance.errors import ConfigError
from conformance.profile import Profile
from conformance.redact import Redactor
from gates.evaluate import Evaluation
from gates.gate import Gate

SCHEMA_VERSION = "GatesGateReport.v1"
HASH_SCOPE = "GatesGateReportDeterministicCore.v1"
CORE_KEYS = (
    "schemaVersion",
    "artifactHashScope",
    "capturedAt",
    "inputs",
    "sources",
    "checks",
    "blockingIssues",
    "verdict",
)


def artifact_hash(report: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the deterministic core (everything but generatedAt/artifactHash)."""
    core = {k: report.get(k) for k in CORE_KEYS}
    core["checks"] = core["checks"] or []
    core["blockingIssues"] = core["blockingIssues"] or []
    if "components" in report:  # a roll-up binds the hashes of the reports it decided over
        core["components"] = report["components"]
    return canonical_hash(core)


def build(
    gate: Gate,
    profile: Profile,
    evaluation: Evaluation,
    *,
    target: str,
    captured_at: str | None,
    redactor: Redactor,
    now: dt.datetime | None = None,
    components: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Assemble a schema-valid report with its artifactHash, in the shape the gate's ``format`` names.

    ``now`` defaults to `conformance.clock.now` (``$GATES_NOW`` pins it); ``components`` are a
    roll-up's component reports.
    """
    generated = clock.iso_millis(now or clock.now())
    if gate.format != "gates":
        from gates import formats

        return formats.get(gate.format, source=gate.source).build(
            gate, profile, evaluation, captured_at=captured_at, generated_at=generated, redactor=redactor
        )
    report: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION,
        "generatedAt": generated,
        "artifactHashScope": HASH_SCOPE,
        "capturedAt": captured_at,
        "inputs": {
            "gate": gate.name,
            "profile": profile.name,
            "target": target,
            "variables": profile.public_variables(),
        },
        "sources": {
            "profile": {"path": profile.source, "sha256": profile.sha256},
            "gate": {"path": gate.source, "sha256": gate.sha256},
        },
        "checks": [{**c, "detail": redactor.scrub(c["detail"])} for c in evaluation.checks],
        "blockingIssues": [
            {**b, "reason": redactor.text(b["reason"]), "remediation": redactor.scrub(b["remediation"])}
            for b in evaluation.blocking
        ],
        "verdict": evaluation.verdict,
    }
    if components is not None:
        report["components"] = components
    report["artifactHash"] = artifact_hash(report)
    return report


def schema_for(report: object) -> str:
    """The schema a report must satisfy: its format's (by schemaVersion), else ``gate-report``."""
    from gates import formats

    found = formats.for_report(report)
    return found.schema if found is not None else "gate-report"


def write(report: dict[str, Any], path: Path) -> None:
    """Validate against the schema of its format, then write atomically."""
    _schemas.validate(report, schema_for(report), source=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def verify(path: Path) -> dict[str, Any]:
    """Read a report, validate it and recompute its artifactHash; problems are `ConfigError`."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read report: {exc.strerror or exc}", source=str(path)) from exc
    except ValueError as exc:
        raise ConfigError(f"not JSON: {exc}", source=str(path)) from exc
    _schemas.validate(report, schema_for(report), source=str(path))
    if artifact_hash(report) != report["artifactHash"]:
        raise ConfigError(
            "artifactHash does not match the report's content (it was edited after it was written)",
            source=str(path),
            location="artifactHash",
        )
    return dict(report)
