"""Gate reports: build, hash, validate and write; and re-verify a written report."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance import _schemas, clock
from conformance.canonical import canonical_hash
from conformance.errors import ConfigError
from conformance.profile import Profile
from conformance.redact import Redactor
from gates.evaluate import Evaluation
from gates.gate import Gate

if TYPE_CHECKING:  # signing loads cryptography: only verifying and signing need it
    from gates.signing import TrustedKey

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
    if "waivers" in report:  # the waivers that applied (or lapsed, or idled) bind the verdict
        core["waivers"] = report["waivers"]
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
    waivers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Assemble a schema-valid report with its artifactHash, in the shape the gate's ``format`` names.

    ``now`` defaults to `conformance.clock.now` (``$GATES_NOW`` pins it); ``components`` are a
    roll-up's component reports; ``waivers`` how each waiver of the run's waivers file stood
    (`gates.evaluate.waiver_findings`), hashed.
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
    if waivers is not None:
        report["waivers"] = redactor.scrub(waivers)
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


def verify(path: Path, *, trusted_keys: Sequence[TrustedKey] = ()) -> dict[str, Any]:
    """Read a report, validate it, recompute its artifactHash and check its signature; problems are
    `ConfigError`.

    A ``signature`` is verified against ``trusted_keys``; with none given it is left unverified (see
    `signature_state`). Given trusted keys, a report of a signing format must be signed.
    """
    from gates import formats, signing

    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read report: {exc.strerror or exc}", source=str(path)) from exc
    except ValueError as exc:
        raise ConfigError(f"not JSON: {exc}", source=str(path)) from exc
    _schemas.validate(report, schema_for(report), source=str(path))
    fmt = formats.for_report(report)
    expected = fmt.artifact_hash(report) if fmt is not None else artifact_hash(report)
    if expected != report["artifactHash"]:
        raise ConfigError(
            "artifactHash does not match the report's content (it was edited after it was written)",
            source=str(path),
            location="artifactHash",
        )
    signature = report.get("signature")
    if trusted_keys and signature is None and fmt is not None and fmt.signable:
        raise ConfigError(
            "the report is not signed, but public keys to verify it were given", source=str(path)
        )
    if trusted_keys and signature is not None and signing.verify(expected, signature, trusted_keys) is None:
        raise ConfigError(
            "the signature does not verify with any given public key"
            + (f" for keyId {signature['keyId']!r}" if signature.get("keyId") else ""),
            source=str(path),
            location="signature",
        )
    return dict(report)


def signature_state(report: Mapping[str, Any], trusted_keys: Sequence[TrustedKey]) -> str | None:
    """How a verified report's signature stands: ``unsigned``, ``verified (KEY)`` or ``not verified``;
    None for a report whose format signs nothing."""
    from gates import formats, signing

    signature = report.get("signature")
    if signature is None:
        fmt = formats.for_report(report)
        return "unsigned" if fmt is not None and fmt.signable else None
    found = signing.verify(str(report["artifactHash"]), signature, trusted_keys) if trusted_keys else None
    return (
        f"signature verified ({found.source})"
        if found
        else "signature present, not verified (no --public-key)"
    )


def status_of(report: Mapping[str, Any]) -> str:
    """A report's verdict: ``verdict.status``, or the top-level ``status`` of shapes without a verdict."""
    verdict = report.get("verdict")
    return str(verdict["status"] if isinstance(verdict, Mapping) else report["status"])
