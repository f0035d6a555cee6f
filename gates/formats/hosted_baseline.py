"""``HostedBaselineEvidence.v1``: upstream's hosted-baseline evidence, written from this engine's checks.

Upstream's ``ops:hosted-baseline:evidence`` command (digest §4.1) probes a hosted API and records what
it saw: ``type`` (not ``schemaVersion``), ``v``, ``capturedAt``, ``status``, the sorted unique
``failures`` in upstream's words, its ``inputs``, one object per probe under ``checks``, the
``artifactHash`` over everything else, and optionally an Ed25519 ``signature`` of that hash.

Each probe's object is rebuilt from the observation of the check that made it (below, ``ROWS``),
with the same rules the check applied (`conformance.nooterra_hosted`), so the report and the gate's
verdict agree. A check that could not observe leaves its probe's object failed with nothing observed
(``statusCode`` null), never passed; upstream's command would have stopped there without a report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance import nooterra_hosted as hosted
from conformance.canonical import canonical_hash
from conformance.errors import ConfigError
from conformance.probes.http import host_port
from conformance.profile import NooterraApi, Profile
from conformance.redact import Redactor
from gates.evaluate import Evaluation
from gates.gate import Gate

TYPE = "HostedBaselineEvidence.v1"
UNSIGNED = ("artifactHash", "signature")  # upstream's hash covers every other top-level member

HEALTHZ = "nooterra.healthz.ok"
OPS_STATUS = "nooterra.maintenance.schedulers_enabled"
OPS_CONFIG = "nooterra.ops_config.s8_guard"
METRICS = "nooterra.metrics.series_present"
BILLING = "nooterra.billing.catalog_valid"
RATE_LIMIT = "nooterra.rate_limit.enforced"
# upstream probes these always; the rate-limit probe only when asked (its object is null otherwise)
REQUIRED = (HEALTHZ, OPS_STATUS, OPS_CONFIG, METRICS, BILLING)
OPTIONAL = (RATE_LIMIT,)
POLICY_SUMMARY_KEYS = (
    "schemaVersion",
    "requireApprovalAboveCents",
    "strictEvidenceRefs",
    "highRiskActionTypesCount",
)
# report object → the check whose observation it records
ROWS = {
    "healthz": HEALTHZ,
    "opsStatus": OPS_STATUS,
    "opsConfig": OPS_CONFIG,
    "s8ApprovalRollout": OPS_CONFIG,
    "metrics": METRICS,
    "billingCatalog": BILLING,
    "rateLimitProbe": RATE_LIMIT,
}


def artifact_hash(report: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of the report without ``artifactHash`` and ``signature`` (§7.6.3)."""
    return canonical_hash({k: v for k, v in report.items() if k not in UNSIGNED})


def _in_order(value: Any, keys: tuple[str, ...]) -> Any:
    """``value`` with ``keys`` first, in upstream's order (recorded observations come back sorted)."""
    if not isinstance(value, Mapping):
        return value
    return {**{k: value[k] for k in keys if k in value}, **{k: v for k, v in value.items() if k not in keys}}


def _observed(entry: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if entry is None or entry.get("status") not in ("pass", "fail", "waived"):
        return None
    observed = (entry.get("detail") or {}).get("observed")
    return observed if isinstance(observed, dict) else None


def healthz_row(obs: Mapping[str, Any] | None) -> dict[str, Any]:
    """``checks.healthz``: 200 and ``body.ok === true``; the body less its latency."""
    if obs is None:
        return {"ok": False, "statusCode": None, "body": None}
    body = obs.get("body")
    ok = obs.get("statusCode") == 200 and isinstance(body, dict) and body.get("ok") is True
    return {"ok": ok, "statusCode": obs.get("statusCode"), "body": body}


def ops_status_row(obs: Mapping[str, Any] | None) -> dict[str, Any]:
    """``checks.opsStatus``: 200 with ``ok``, the two reconciliation schedulers, and the summary."""
    if obs is None:
        return {"ok": False, "statusCode": None, "maintenanceSchedulersEnabled": False, "summary": None}
    ok = obs.get("statusCode") == 200 and obs.get("ok") is True
    enabled = obs.get("financeReconciliation") is True and obs.get("moneyRailReconciliation") is True
    return {
        "ok": ok,
        "statusCode": obs.get("statusCode"),
        "maintenanceSchedulersEnabled": enabled,
        "summary": _in_order(obs.get("summary"), ("process", "maintenance")) if ok else None,
    }


def ops_config_rows(obs: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``checks.opsConfig`` and ``checks.s8ApprovalRollout``."""
    if obs is None:
        return {"ok": False, "statusCode": None, "s8Approval": None}, hosted.s8_rollout(None)
    rollout = obs.get("rollout")
    config = {
        "ok": obs.get("statusCode") == 200,
        "statusCode": obs.get("statusCode"),
        "s8Approval": _in_order(obs.get("s8Approval"), ("enforceX402AuthorizePayment", "policyConfigured")),
    }
    if not isinstance(rollout, dict):
        return config, hosted.s8_rollout(None)
    rollout = _in_order(rollout, tuple(hosted.s8_rollout(None)))
    rollout["policySummary"] = _in_order(rollout.get("policySummary"), POLICY_SUMMARY_KEYS)
    return config, rollout


def metrics_row(obs: Mapping[str, Any] | None, required: tuple[str, ...]) -> dict[str, Any]:
    """``checks.metrics``: 200 and no required series missing."""
    if obs is None:
        return {
            "ok": False,
            "statusCode": None,
            "metricCount": 0,
            "missingMetrics": hosted.sorted_unique(list(required)),
        }
    missing = hosted.sorted_unique([str(m) for m in obs.get("missingMetrics") or []])
    return {
        "ok": obs.get("statusCode") == 200 and not missing,
        "statusCode": obs.get("statusCode"),
        "metricCount": obs.get("metricCount", 0),
        "missingMetrics": missing,
    }


def billing_row(obs: Mapping[str, Any] | None) -> dict[str, Any]:
    """``checks.billingCatalog``: 200 and a valid launch-plan catalog."""
    if obs is None:
        return {"ok": False, "statusCode": None, "validation": hosted.billing_request_failed()}
    validation = obs.get("validation")
    if isinstance(validation, dict):
        validation = _in_order(validation, ("ok", "failures", "summary"))
        if "summary" in validation:
            validation["summary"] = _in_order(validation["summary"], ("schemaVersion", "planIds"))
    else:
        validation = hosted.billing_request_failed()
    return {
        "ok": obs.get("statusCode") == 200 and validation.get("ok") is True,
        "statusCode": obs.get("statusCode"),
        "validation": validation,
    }


def rate_limit_row(entry: Mapping[str, Any] | None, path: str) -> dict[str, Any]:
    """``checks.rateLimitProbe`` in ``required`` mode: some 2xx, then a 429 (with retry-after), no 5xx."""
    obs = _observed(entry)
    passed = entry is not None and entry.get("status") == "pass"
    code = None if passed else str((entry or {}).get("failureCode") or "no_target")
    if obs is None:
        obs = {}
    return {
        "path": path,
        "requests": obs.get("requests", 0),
        "mode": "required",
        "statusCodeCounts": obs.get("statusCodeCounts") or {},
        "saw429": obs.get("saw429") is True,
        "saw2xx": obs.get("saw2xx") is True,
        "saw5xx": obs.get("saw5xx") is True,
        "failureCode": code,
        "ok": passed,
    }


def failed_probes(checks: Mapping[str, Any], inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Each failure in upstream's words, with the check whose observation shows it."""
    out: list[tuple[str, str]] = []
    if not checks["healthz"]["ok"]:
        out.append((HEALTHZ, "healthz check failed"))
    status = checks["opsStatus"]
    if not status["ok"]:
        out.append((OPS_STATUS, "ops status check failed"))
    if inputs["requireMaintenanceSchedulers"] and not status["maintenanceSchedulersEnabled"]:
        out.append((OPS_STATUS, "required maintenance schedulers are not enabled"))
    if not checks["opsConfig"]["ok"]:
        out.append((OPS_CONFIG, "ops config check failed"))
    rollout = checks["s8ApprovalRollout"]
    if not rollout["ok"]:
        out.append((OPS_CONFIG, f"s8 rollout guard check failed ({rollout['failureCode']})"))
    if not checks["metrics"]["ok"]:
        out.append((METRICS, "metrics check failed"))
    if inputs["requireBillingCatalog"] and not checks["billingCatalog"]["ok"]:
        out.append((BILLING, "billing catalog/quotas check failed"))
    probe = checks["rateLimitProbe"]
    if probe is not None and not probe["ok"]:
        out.append((RATE_LIMIT, f"rate-limit probe failed for mode={probe['mode']}"))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class HostedBaselineFormat:
    """Writes ``hosted-baseline-evidence.json``."""

    name: str = "nooterra-hosted-baseline"
    schema_version: str = TYPE
    schema: str = "nooterra-hosted-baseline-evidence"

    @property
    def signable(self) -> bool:
        """The report carries an Ed25519 signature when the profile names a signing key."""
        return True

    def check(self, gate: Gate) -> None:
        """The gate requires upstream's five probes (and optionally the rate-limit probe), nothing else."""
        known = (*REQUIRED, *OPTIONAL)
        required = {r.check for r in gate.requires}
        for req in gate.requires:
            if req.check not in known:
                raise ConfigError(
                    f"report format {self.name!r} has no place for {req.check}; it reports: {', '.join(known)}",
                    source=gate.source,
                )
            if req.targets is not None:
                raise ConfigError(
                    f"report format {self.name!r} reports the profile's API as declared; drop targets: from "
                    f"{req.check}",
                    source=gate.source,
                )
        missing = [c for c in REQUIRED if c not in required]
        if missing:
            raise ConfigError(
                f"report format {self.name!r} needs every probe upstream always runs; add {', '.join(missing)}",
                source=gate.source,
            )

    def prepare(self, profile: Profile) -> None:
        """Refuse, before any check runs, a profile without a Nooterra API or with an unusable signing key."""
        cfg = self._cfg(profile)
        if cfg.hosted.signing_key_file:
            from gates import signing  # cryptography loads only when a report is signed

            signing.load_private_key(Path(cfg.hosted.signing_key_file))

    def _cfg(self, profile: Profile) -> NooterraApi:
        if profile.nooterra is None:
            raise ConfigError(
                f"report format {self.name!r} needs a profile with a nooterra: section", source=profile.source
            )
        return profile.nooterra

    def instance_ids(self) -> Mapping[str, str]:
        """Report object → the check it records (the report names no targets)."""
        return dict(ROWS)

    def artifact_hash(self, report: Mapping[str, Any]) -> str:
        """Upstream's rule: the hash of everything but ``artifactHash`` and ``signature``."""
        return artifact_hash(report)

    def not_passing(self, report: Mapping[str, Any]) -> dict[str, str]:
        """Check id → ``fail`` for each check whose probe the report records as failed."""
        return {check: "fail" for check, _ in failed_probes(report["checks"], report["inputs"])}

    def build(
        self,
        gate: Gate,
        profile: Profile,
        evaluation: Evaluation,
        *,
        captured_at: str | None,
        generated_at: str,
        redactor: Redactor,
    ) -> dict[str, Any]:
        """The evidence for ``evaluation``, secrets scrubbed, with its artifactHash (and signature)."""
        self.check(gate)
        cfg = self._cfg(profile)
        required = {r.check for r in gate.requires}
        entries: dict[str, dict[str, Any]] = {}
        for entry in sorted(evaluation.checks, key=lambda e: str(e["id"])):
            entries.setdefault(str(entry["id"]).split("[", 1)[0], entry)
        api = profile.service(cfg.api)
        probe_path = cfg.rate_limit.path if cfg.rate_limit is not None else "/ops/status"
        rate_limited = RATE_LIMIT in required
        inputs = {
            "baseUrl": api.url or f"http://{host_port(api.bind, api.port)}",
            "tenantId": cfg.tenant,
            "environment": cfg.hosted.environment,
            "requireBillingCatalog": True,
            "requireMaintenanceSchedulers": True,
            "requiredMetrics": hosted.sorted_unique(list(cfg.required_metrics)),
            "rateLimitMode": "required" if rate_limited else "optional",
            "rateLimitProbeRequests": cfg.rate_limit.max_requests if rate_limited and cfg.rate_limit else 0,
            "rateLimitProbePath": probe_path,
            "runBackupRestore": False,
            "backupRestoreEvidencePath": None,
            "requireBackupRestore": False,
        }
        ops_config, rollout = ops_config_rows(_observed(entries.get(OPS_CONFIG)))
        checks = {
            "healthz": healthz_row(_observed(entries.get(HEALTHZ))),
            "opsStatus": ops_status_row(_observed(entries.get(OPS_STATUS))),
            "opsConfig": ops_config,
            "s8ApprovalRollout": rollout,
            "metrics": metrics_row(_observed(entries.get(METRICS)), cfg.required_metrics),
            "billingCatalog": billing_row(_observed(entries.get(BILLING))),
            "rateLimitProbe": rate_limit_row(entries.get(RATE_LIMIT), probe_path) if rate_limited else None,
            "backupRestore": None,
        }
        failures = hosted.sorted_unique([message for _, message in failed_probes(checks, inputs)])
        core = redactor.scrub(
            {
                "type": TYPE,
                "v": 1,
                "capturedAt": captured_at or generated_at,
                "status": "fail" if failures else "pass",
                "failures": failures,
                "inputs": inputs,
                "checks": checks,
            }
        )
        report: dict[str, Any] = {**core, "artifactHash": artifact_hash(core)}
        if cfg.hosted.signing_key_file:
            from gates import signing

            key = signing.load_private_key(Path(cfg.hosted.signing_key_file))
            report["signature"] = signing.sign(report["artifactHash"], key, cfg.hosted.signature_key_id)
        return report


HOSTED_BASELINE = HostedBaselineFormat()
FORMATS = (HOSTED_BASELINE,)
