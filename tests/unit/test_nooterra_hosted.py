"""Hosted baseline evidence: the S8 and billing rules, the HostedBaselineEvidence.v1 report, its hash and signature.

Hashes and signatures are recomputed here with `hashlib`, `conformance.canonical` and `cryptography`
directly, not through `gates.signing` or the report format.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conformance import _schemas
from conformance import nooterra_hosted as hosted
from conformance.canonical import canonical_json
from conformance.errors import ConfigError
from conformance.profile import Profile, load_profile
from conformance.redact import Redactor
from gates import formats
from gates import report as reports
from gates.evaluate import evaluate
from gates.formats import hosted_baseline as hb
from gates.gate import Gate, expand, load_gate
from gates.testing import run_cli

OPS_TOKEN = "tok_unit_ops_a1b2c3"
FINANCE_TOKEN = "tok_unit_finance_d4e5f6"
POLICY = {
    "schemaVersion": hosted.HUMAN_APPROVAL_POLICY_VERSION,
    "highRiskActionTypes": ["funds_transfer", "contract_signature"],
    "requireApprovalAboveCents": 50000,
    "strictEvidenceRefs": True,
}
GENERATED = "2026-03-01T10:00:00.000Z"


def catalog() -> dict[str, Any]:
    """A valid BillingPlanCatalog.v1."""
    return {
        "schemaVersion": "BillingPlanCatalog.v1",
        "plans": {
            plan: {
                "planId": plan,
                "displayName": plan.title(),
                **dict.fromkeys(hosted.BILLING_NUMERIC_FIELDS, 10),
            }
            for plan in hosted.BILLING_PLANS
        },
    }


class TestS8Rollout:
    """The S8 approval rollout guard of §4.1 item 3, rule by rule."""

    def test_enforced_with_explicit_policy_passes_with_summary(self) -> None:
        """Enforcement on with a well-formed policy passes and summarises the policy."""
        row = hosted.s8_rollout(
            {"enforceX402AuthorizePayment": True, "policy": POLICY, "policyConfigured": True}
        )
        assert row == {
            "ok": True,
            "enforceX402AuthorizePayment": True,
            "policyPresent": True,
            "policyShapeValid": True,
            "failureCode": None,
            "message": "S8 approval enforcement is enabled with explicit policy shape.",
            "policySummary": {
                "schemaVersion": hosted.HUMAN_APPROVAL_POLICY_VERSION,
                "requireApprovalAboveCents": 50000,
                "strictEvidenceRefs": True,
                "highRiskActionTypesCount": 2,
            },
        }

    @pytest.mark.parametrize("policy", [None, {"requireApprovalAboveCents": -1}])
    def test_enforcement_off_passes_whatever_the_policy(self, policy: Any) -> None:
        """With enforcement off the guard passes as disabled, and still says whether the policy is valid."""
        row = hosted.s8_rollout({"enforceX402AuthorizePayment": False, "policy": policy})
        assert (row["ok"], row["failureCode"], row["policySummary"]) == (True, None, None)
        assert row["message"] == "S8 approval enforcement toggle is disabled."
        assert row["policyPresent"] is (policy is not None)
        assert row["policyShapeValid"] is False

    @pytest.mark.parametrize(
        ("s8", "code"),
        [
            (None, "s8_rollout_config_missing"),
            ([], "s8_rollout_config_missing"),
            ({"enforceX402AuthorizePayment": True}, "s8_approval_policy_missing"),
            ({"enforceX402AuthorizePayment": True, "policy": [POLICY]}, "s8_approval_policy_missing"),
            ({"enforceX402AuthorizePayment": True, "policy": {**POLICY, "schemaVersion": "X.v2"}},
             "s8_approval_policy_schema_invalid"),
            ({"enforceX402AuthorizePayment": True, "policy": {**POLICY, "schemaVersion": None}},
             "s8_approval_policy_schema_invalid"),
            ({"enforceX402AuthorizePayment": True, "policy": {**POLICY, "requireApprovalAboveCents": -1}},
             "s8_approval_policy_threshold_invalid"),
            ({"enforceX402AuthorizePayment": True, "policy": {**POLICY, "requireApprovalAboveCents": 1.5}},
             "s8_approval_policy_threshold_invalid"),
            ({"enforceX402AuthorizePayment": True, "policy": {**POLICY, "requireApprovalAboveCents": True}},
             "s8_approval_policy_threshold_invalid"),
            ({"enforceX402AuthorizePayment": True, "policy": {**POLICY, "requireApprovalAboveCents": 2**53}},
             "s8_approval_policy_threshold_invalid"),
            ({"enforceX402AuthorizePayment": True, "policy": {**POLICY, "requireApprovalAboveCents": "5"}},
             "s8_approval_policy_threshold_invalid"),
            ({"enforceX402AuthorizePayment": True, "policy": {**POLICY, "strictEvidenceRefs": "true"}},
             "s8_approval_policy_strict_evidence_refs_invalid"),
            ({"enforceX402AuthorizePayment": True, "policy": {**POLICY, "highRiskActionTypes": []}},
             "s8_approval_policy_action_types_invalid"),
            ({"enforceX402AuthorizePayment": True, "policy": {**POLICY, "highRiskActionTypes": "funds_transfer"}},
             "s8_approval_policy_action_types_invalid"),
        ],
    )  # fmt: skip
    def test_each_rule_names_its_failure_code(self, s8: Any, code: str) -> None:
        """The first rule broken names the failure code and a message; no summary is given."""
        row = hosted.s8_rollout(s8)
        assert (row["ok"], row["failureCode"], row["policySummary"]) == (False, code, None)
        assert row["message"] == hosted.S8_MESSAGES[code]
        assert row["policyShapeValid"] is False

    def test_absent_schema_version_and_integral_float_threshold_are_accepted(self) -> None:
        """schemaVersion is checked only when present; 5.0 is a safe integer, as in JavaScript."""
        policy = {k: v for k, v in POLICY.items() if k != "schemaVersion"} | {
            "requireApprovalAboveCents": 5.0
        }
        row = hosted.s8_rollout({"enforceX402AuthorizePayment": True, "policy": policy})
        assert row["ok"] is True
        assert row["policySummary"]["schemaVersion"] is None

    def test_a_truthy_toggle_that_is_not_true_does_not_enforce(self) -> None:
        """Only ``true`` turns enforcement on (upstream's strict comparison)."""
        row = hosted.s8_rollout({"enforceX402AuthorizePayment": "true", "policy": None})
        assert (row["ok"], row["enforceX402AuthorizePayment"]) == (True, None)


class TestBillingValidation:
    """BillingPlanCatalog.v1 with the four launch plans and their numeric fields."""

    def test_valid_catalog(self) -> None:
        """A complete catalog passes and is summarised."""
        assert hosted.billing_validation(catalog()) == {
            "ok": True,
            "failures": [],
            "summary": {
                "schemaVersion": "BillingPlanCatalog.v1",
                "planIds": ["builder", "enterprise", "free", "growth"],
            },
        }

    def test_every_problem_is_listed(self) -> None:
        """Wrong version, a missing plan, a wrong planId, no displayName and non-numbers are each named."""
        body = catalog()
        body["schemaVersion"] = "BillingPlanCatalog.v0"
        del body["plans"]["enterprise"]
        body["plans"]["free"]["planId"] = "gratis"
        body["plans"]["builder"]["displayName"] = " "
        body["plans"]["growth"]["settledVolumeFeeBps"] = "75"
        body["plans"]["growth"]["subscriptionCents"] = None
        del body["plans"]["growth"]["arbitrationCaseFeeCents"]
        result = hosted.billing_validation(body)
        assert result["ok"] is False
        assert result["failures"] == [
            "catalog.schemaVersion must be BillingPlanCatalog.v1",
            "plan free planId must be free",
            "plan builder missing displayName",
            "plan growth missing numeric subscriptionCents",
            "plan growth missing numeric settledVolumeFeeBps",
            "plan growth missing numeric arbitrationCaseFeeCents",
            "missing plan enterprise",
        ]
        assert result["summary"]["planIds"] == ["builder", "free", "growth"]

    @pytest.mark.parametrize("body", [None, [], {"schemaVersion": "BillingPlanCatalog.v1", "plans": []}])
    def test_no_plans_object(self, body: Any) -> None:
        """A body without a plans object fails with every plan missing."""
        result = hosted.billing_validation(body)
        assert "catalog.plans must be an object" in result["failures"]
        assert result["summary"]["planIds"] == []

    def test_plan_ids_sort_as_javascript_does(self) -> None:
        """planIds use JavaScript's default sort (UTF-16 code units), not code points."""
        body = catalog()
        body["plans"]["\U0001f600"] = {}
        body["plans"]["\uff21"] = {}
        assert hosted.billing_validation(body)["summary"]["planIds"][-2:] == ["\U0001f600", "\uff21"]


class TestEvidenceBodies:
    """What of an observed body becomes evidence."""

    def test_healthz_loses_its_latency_and_ticks_only(self) -> None:
        """dbLatencyMs and the autotick times go; everything else stays as observed."""
        body = {"ok": True, "dbOk": True, "dbLatencyMs": 3, "autotickLastTickAt": "t", "autotickLastSuccessAt": None,
                "opsAuth": {"mode": "scoped"}}  # fmt: skip
        assert hosted.healthz_evidence(body) == {"ok": True, "dbOk": True, "opsAuth": {"mode": "scoped"}}
        assert hosted.healthz_evidence({"raw": "x"}) == {"raw": "x"}

    def test_ops_status_summary_keeps_what_each_job_is(self) -> None:
        """startedAt only of the process; each job without its ...At times and run counters."""
        body = {
            "ok": True,
            "process": {"startedAt": "2026-03-01T09:00:00.000Z", "uptimeSeconds": 3600},
            "maintenance": {
                "financeReconciliation": {"enabled": True, "lastRunAt": "a", "lastSuccessAt": "b", "lastRunOk": True,
                                          "runs": 7, "failures": 0, "intervalSeconds": 300},
                "billingStripeSync": {"enabled": False},
            },
        }  # fmt: skip
        assert hosted.ops_status_summary(body) == {
            "process": {"startedAt": "2026-03-01T09:00:00.000Z"},
            "maintenance": {
                "financeReconciliation": {"enabled": True, "lastRunOk": True, "intervalSeconds": 300},
                "billingStripeSync": {"enabled": False},
            },
        }

    def test_schedulers_enabled_needs_both(self) -> None:
        """Finance and money-rail reconciliation must both be enabled."""
        both = {
            "maintenance": {
                "financeReconciliation": {"enabled": True},
                "moneyRailReconciliation": {"enabled": True},
            }
        }
        assert hosted.schedulers_enabled(both) is True
        assert (
            hosted.schedulers_enabled({"maintenance": {"financeReconciliation": {"enabled": True}}}) is False
        )
        assert hosted.schedulers_enabled(None) is False


# --- the report ----------------------------------------------------------------------------------------


def nooterra(**sets: str) -> Profile:
    """The nooterra profile with the unit tokens (and any further ``--set``)."""
    return load_profile(
        "nooterra", {"ops_token": OPS_TOKEN, "finance_token": FINANCE_TOKEN, **sets}, environ={}
    )


def passing() -> dict[str, dict[str, Any]]:
    """Check instance → a passing result with the observation a healthy API gives."""
    s8 = {"enforceX402AuthorizePayment": True, "policy": POLICY, "policyConfigured": True}
    observed = {
        "nooterra.healthz.ok[api]": {"statusCode": 200, "body": {"ok": True, "dbOk": True}},
        "nooterra.maintenance.schedulers_enabled[maintenance]": {
            "statusCode": 200, "ok": True, "financeReconciliation": True, "moneyRailReconciliation": True,
            "summary": {"process": {"startedAt": "2026-03-01T09:00:00.000Z"},
                        "maintenance": {"financeReconciliation": {"enabled": True}}},
        },
        "nooterra.ops_config.s8_guard[api]": {
            "statusCode": 200, "s8Approval": hosted.s8_config_summary(s8), "rollout": hosted.s8_rollout(s8),
        },
        "nooterra.metrics.series_present[api]": {"statusCode": 200, "metricCount": 23, "missingMetrics": []},
        "nooterra.billing.catalog_valid[api]": {"statusCode": 200, "validation": hosted.billing_validation(catalog())},
        "nooterra.rate_limit.enforced[api]": {
            "saw2xx": True, "saw429": True, "retryAfter": True, "saw5xx": False, "sawUnexpected4xx": False,
            "requests": 31, "statusCodeCounts": {"200": 30, "429": 1},
        },
    }  # fmt: skip
    return {i: {"outcome": "pass", "message": "conforms", "observed": o} for i, o in observed.items()}


def fail(observed: dict[str, Any], reason: str) -> dict[str, Any]:
    """A failed result."""
    return {"outcome": "fail", "reasonCode": reason, "message": reason, "observed": observed}


def error(reason: str = "probe_unreachable") -> dict[str, Any]:
    """A result that could not observe."""
    return {"outcome": "error", "reasonCode": reason, "message": "GET http://127.0.0.1:3000/healthz: refused"}


def build(
    results: dict[str, dict[str, Any]],
    profile: Profile | None = None,
    *,
    gate: Gate | None = None,
    captured_at: str | None = "2026-03-01T10:00:00.000Z",
) -> dict[str, Any]:
    """The hosted-baseline report for ``results``."""
    profile = profile or nooterra()
    gate = gate or load_gate("hosted-baseline")
    evaluation = evaluate(gate, expand(gate, profile), results)
    return hb.HOSTED_BASELINE.build(
        gate,
        profile,
        evaluation,
        captured_at=captured_at,
        generated_at=GENERATED,
        redactor=Redactor(profile.secrets()),
    )


def independent_hash(report: dict[str, Any]) -> str:
    """§7.6.3 by hand: sha256 of the canonical JSON of the report less artifactHash and signature."""
    rest = {k: v for k, v in report.items() if k not in ("artifactHash", "signature")}
    return hashlib.sha256(canonical_json(rest).encode("utf-8")).hexdigest()


class TestReport:
    """HostedBaselineEvidence.v1 built from check results."""

    def test_healthy_deployment_passes(self) -> None:
        """Every probe ok: status pass, no failures, upstream's inputs, a schema-valid report."""
        report = build(passing())
        cfg = nooterra().nooterra
        assert cfg is not None
        assert _schemas.errors(report, "nooterra-hosted-baseline-evidence") == []
        assert (report["type"], report["v"], report["status"], report["failures"]) == (hb.TYPE, 1, "pass", [])
        assert list(report) == [
            "type",
            "v",
            "capturedAt",
            "status",
            "failures",
            "inputs",
            "checks",
            "artifactHash",
        ]
        assert report["inputs"] == {
            "baseUrl": "http://127.0.0.1:3000",
            "tenantId": "tenant_default",
            "environment": None,
            "requireBillingCatalog": True,
            "requireMaintenanceSchedulers": True,
            "requiredMetrics": sorted(cfg.required_metrics),
            "rateLimitMode": "required",
            "rateLimitProbeRequests": 120,
            "rateLimitProbePath": "/capabilities",
            "runBackupRestore": False,
            "backupRestoreEvidencePath": None,
            "requireBackupRestore": False,
        }
        assert all(row["ok"] for name, row in report["checks"].items() if name != "backupRestore")
        assert report["checks"]["rateLimitProbe"]["statusCodeCounts"] == {"200": 30, "429": 1}
        assert report["checks"]["backupRestore"] is None
        assert hb.HOSTED_BASELINE.not_passing(report) == {}

    def test_artifact_hash_is_upstreams_rule(self) -> None:
        """artifactHash = sha256(canonical JSON of everything but artifactHash and signature)."""
        report = build(passing())
        assert report["artifactHash"] == independent_hash(report)
        assert reports.schema_for(report) == "nooterra-hosted-baseline-evidence"

    def test_rows_keep_upstreams_member_order(self) -> None:
        """Recorded observations come back with sorted keys; the rows are written in upstream's order."""
        recorded = json.loads(json.dumps(passing(), sort_keys=True))
        report = build(recorded)
        assert report == build(passing())
        assert list(report["checks"]["s8ApprovalRollout"]) == [
            "ok", "enforceX402AuthorizePayment", "policyPresent", "policyShapeValid", "failureCode", "message",
            "policySummary",
        ]  # fmt: skip
        assert list(report["checks"]["s8ApprovalRollout"]["policySummary"]) == list(hb.POLICY_SUMMARY_KEYS)
        assert list(report["checks"]["billingCatalog"]["validation"]) == ["ok", "failures", "summary"]
        assert list(report["checks"]["opsStatus"]["summary"]) == ["process", "maintenance"]

    def test_same_observations_same_hash(self) -> None:
        """Identical observations give the identical report; capturedAt is hashed, latency is not recorded."""
        first = build(passing())
        again = passing()
        again["nooterra.healthz.ok[api]"]["durationSeconds"] = 9.9
        assert build(again) == first
        assert (
            build(passing(), captured_at="2026-03-02T10:00:00.000Z")["artifactHash"] != first["artifactHash"]
        )
        assert build(passing(), captured_at=None)["capturedAt"] == GENERATED

    @pytest.mark.parametrize(
        ("instance", "result", "failures"),
        [
            ("nooterra.healthz.ok[api]",
             fail({"statusCode": 503, "body": {"ok": False, "dbOk": False}}, "healthz_not_ok"),
             ["healthz check failed"]),
            ("nooterra.maintenance.schedulers_enabled[maintenance]",
             fail({"statusCode": 200, "ok": True, "financeReconciliation": False, "moneyRailReconciliation": True,
                   "summary": {"process": {"startedAt": None}, "maintenance": {}}}, "maintenance_schedulers_disabled"),
             ["required maintenance schedulers are not enabled"]),
            ("nooterra.maintenance.schedulers_enabled[maintenance]",
             fail({"statusCode": 403, "ok": None, "financeReconciliation": False, "moneyRailReconciliation": False,
                   "summary": None}, "ops_status_unavailable"),
             ["ops status check failed", "required maintenance schedulers are not enabled"]),
            ("nooterra.ops_config.s8_guard[api]",
             fail({"statusCode": 200, "s8Approval": {"enforceX402AuthorizePayment": True, "policyConfigured": False},
                   "rollout": hosted.s8_rollout({"enforceX402AuthorizePayment": True})}, "s8_approval_policy_missing"),
             ["s8 rollout guard check failed (s8_approval_policy_missing)"]),
            ("nooterra.ops_config.s8_guard[api]",
             fail({"statusCode": 403, "s8Approval": None, "rollout": hosted.s8_rollout(None)}, "ops_config_unavailable"),
             ["ops config check failed", "s8 rollout guard check failed (s8_rollout_config_missing)"]),
            ("nooterra.metrics.series_present[api]",
             fail({"statusCode": 200, "metricCount": 20, "missingMetrics": ["replay_mismatch_gauge"]},
                  "metrics_missing_series"),
             ["metrics check failed"]),
            ("nooterra.billing.catalog_valid[api]",
             fail({"statusCode": 403, "validation": hosted.billing_request_failed()}, "billing_catalog_forbidden"),
             ["billing catalog/quotas check failed"]),
            ("nooterra.rate_limit.enforced[api]",
             fail({"saw2xx": True, "saw429": False, "retryAfter": False, "saw5xx": False, "sawUnexpected4xx": False,
                   "requests": 120, "statusCodeCounts": {"200": 120}}, "rate_limit_probe_expected_429_missing"),
             ["rate-limit probe failed for mode=required"]),
        ],
    )  # fmt: skip
    def test_a_failing_check_fails_its_probe_in_upstreams_words(
        self, instance: str, result: dict[str, Any], failures: list[str]
    ) -> None:
        """One failing check: its failures exactly, status fail, and the report names that check back."""
        results = passing()
        results[instance] = result
        report = build(results)
        assert _schemas.errors(report, "nooterra-hosted-baseline-evidence") == []
        assert (report["status"], report["failures"]) == ("fail", failures)
        assert hb.HOSTED_BASELINE.not_passing(report) == {instance.split("[", 1)[0]: "fail"}

    def test_rate_limit_failure_keeps_the_engines_code(self) -> None:
        """A missing retry-after (beyond upstream) fails the probe with this engine's code."""
        results = passing()
        results["nooterra.rate_limit.enforced[api]"] = fail(
            {**results["nooterra.rate_limit.enforced[api]"]["observed"], "retryAfter": False},
            "rate_limit_retry_after_missing",
        )
        probe = build(results)["checks"]["rateLimitProbe"]
        assert (probe["ok"], probe["failureCode"], probe["saw429"]) == (
            False,
            "rate_limit_retry_after_missing",
            True,
        )

    def test_checks_that_could_not_observe_fail_every_probe(self) -> None:
        """Errors are never passes: each probe fails with nothing observed, and the report stays valid."""
        report = build({i: error() for i in passing()})
        assert _schemas.errors(report, "nooterra-hosted-baseline-evidence") == []
        assert report["failures"] == [
            "billing catalog/quotas check failed",
            "healthz check failed",
            "metrics check failed",
            "ops config check failed",
            "ops status check failed",
            "rate-limit probe failed for mode=required",
            "required maintenance schedulers are not enabled",
            "s8 rollout guard check failed (s8_rollout_config_missing)",
        ]
        checks = report["checks"]
        assert checks["healthz"] == {"ok": False, "statusCode": None, "body": None}
        assert checks["billingCatalog"]["validation"] == {"ok": False, "failures": ["catalog request failed"]}
        assert checks["metrics"]["missingMetrics"] == report["inputs"]["requiredMetrics"]
        assert checks["rateLimitProbe"]["failureCode"] == "probe_unreachable"

    def test_a_check_without_target_fails_its_probe(self) -> None:
        """A profile without ops token has no target for the token checks: their probes fail, never pass. The
        rate-limit burst goes to a public route, so it keeps its target; a result missing for it is not_run."""
        profile = load_profile("nooterra", environ={})
        results = {"nooterra.healthz.ok[api]": passing()["nooterra.healthz.ok[api]"]}
        report = build(results, profile)
        assert report["checks"]["healthz"]["ok"] is True
        assert report["checks"]["rateLimitProbe"]["failureCode"] == "not_run"
        assert "metrics check failed" in report["failures"]
        authed = dataclasses.replace(
            profile.nooterra,
            rate_limit=dataclasses.replace(profile.nooterra.rate_limit, authenticated=True),
        )
        report = build(results, dataclasses.replace(profile, nooterra=authed))
        assert report["checks"]["rateLimitProbe"]["failureCode"] == "no_target"

    def test_secrets_are_scrubbed_before_hashing(self) -> None:
        """A run-time secret inside an observation is masked, and the hash covers the masked report."""
        results = passing()
        results["nooterra.healthz.ok[api]"]["observed"]["body"]["echo"] = f"token {OPS_TOKEN}"
        report = build(results)
        assert OPS_TOKEN not in json.dumps(report)
        assert report["checks"]["healthz"]["body"]["echo"] == "token <redacted>"
        assert report["artifactHash"] == independent_hash(report)

    def test_environment_and_rate_limit_inputs_follow_the_profile(self) -> None:
        """environment comes from hosted.environment; no rate-limit requirement gives a null probe."""
        gate = load_gate("hosted-baseline")
        without_rate = dataclasses.replace(
            gate, requires=tuple(r for r in gate.requires if r.check != hb.RATE_LIMIT)
        )
        report = build(passing(), nooterra(**{"hosted.environment": "staging"}), gate=without_rate)
        assert report["inputs"]["environment"] == "staging"
        assert (report["inputs"]["rateLimitMode"], report["inputs"]["rateLimitProbeRequests"]) == (
            "optional",
            0,
        )
        assert report["checks"]["rateLimitProbe"] is None
        assert report["status"] == "pass"


class TestFormatRules:
    """What the format refuses."""

    def test_gate_must_require_every_upstream_probe(self) -> None:
        """A gate that leaves out one of the five always-run probes is refused."""
        gate = load_gate("hosted-baseline")
        partial = dataclasses.replace(gate, requires=gate.requires[1:])
        with pytest.raises(ConfigError, match=r"add nooterra\.healthz\.ok"):
            hb.HOSTED_BASELINE.check(partial)

    def test_prepare_refuses_a_profile_without_nooterra(self) -> None:
        """Only a profile with a nooterra: section can be reported on."""
        with pytest.raises(ConfigError, match="nooterra: section"):
            hb.HOSTED_BASELINE.prepare(load_profile("oroboros", environ={}))

    def test_prepare_refuses_unusable_signing_keys(self, tmp_path: Path) -> None:
        """A missing key file and a key that is not Ed25519 are refused before anything runs."""
        with pytest.raises(ConfigError, match="cannot read the signing key"):
            hb.HOSTED_BASELINE.prepare(nooterra(**{"hosted.signing_key_file": str(tmp_path / "none.pem")}))
        ec_key = tmp_path / "ec.pem"
        ec_key.write_bytes(
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        with pytest.raises(ConfigError, match="not Ed25519"):
            hb.HOSTED_BASELINE.prepare(nooterra(**{"hosted.signing_key_file": str(ec_key)}))

    def test_key_id_needs_a_key_file(self) -> None:
        """hosted.signature_key_id without hosted.signing_key_file is a profile error."""
        with pytest.raises(ConfigError, match="needs a signing key file"):
            nooterra(**{"hosted.signature_key_id": "k1"})

    def test_required_by_production_readiness_in_hosted_mode_only(self) -> None:
        """The Nooterra roll-up counts hosted-baseline for hosted deployments, not for self-host ones."""
        rollup = load_gate("production-readiness", profile="nooterra")
        assert "hosted-baseline" in rollup.applicable("hosted")
        assert "hosted-baseline" not in rollup.applicable("self-host")

    def test_registered_and_found_by_type(self) -> None:
        """The format is selectable by name and recognised by its ``type``."""
        assert formats.get("nooterra-hosted-baseline") is hb.HOSTED_BASELINE
        assert formats.for_report({"type": hb.TYPE}) is hb.HOSTED_BASELINE


def write_key(tmp_path: Path, name: str) -> tuple[Ed25519PrivateKey, Path, Path]:
    """A fresh Ed25519 key: the key, its PKCS#8 private PEM and its SPKI public PEM."""
    key = Ed25519PrivateKey.generate()
    private = tmp_path / f"{name}.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public = tmp_path / f"{name}.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, private, public


class TestSignature:
    """The optional Ed25519 signature over the 32 raw bytes of artifactHash."""

    def test_signed_report_verifies_independently(self, tmp_path: Path) -> None:
        """With a signing key the report carries a signature that cryptography verifies over the raw hash."""
        key, private, _ = write_key(tmp_path, "signer")
        report = build(passing(), nooterra(**{"hosted.signing_key_file": str(private),
                                              "hosted.signature_key_id": "key_prod_1"}))  # fmt: skip
        signature = report["signature"]
        assert list(signature) == ["algorithm", "keyId", "signatureBase64"]
        assert (signature["algorithm"], signature["keyId"]) == ("Ed25519", "key_prod_1")
        raw = base64.b64decode(signature["signatureBase64"], validate=True)
        assert len(raw) == 64
        key.public_key().verify(raw, bytes.fromhex(report["artifactHash"]))
        with pytest.raises(InvalidSignature):  # over the raw bytes, not the hex text
            key.public_key().verify(raw, report["artifactHash"].encode())
        assert report["artifactHash"] == independent_hash(report)  # the signature is outside the hash
        assert _schemas.errors(report, "nooterra-hosted-baseline-evidence") == []
        assert "PRIVATE KEY" not in json.dumps(report)

    def test_no_key_id_no_key_id_member(self, tmp_path: Path) -> None:
        """Without a key id the signature has no keyId member (upstream omits it)."""
        _, private, _ = write_key(tmp_path, "signer")
        report = build(passing(), nooterra(**{"hosted.signing_key_file": str(private)}))
        assert list(report["signature"]) == ["algorithm", "signatureBase64"]

    def test_verify_report_checks_hash_and_signature(self, tmp_path: Path) -> None:
        """`gates verify-report` recomputes the hash and checks the signature against the given keys."""
        _, private, public = write_key(tmp_path, "signer")
        _, _, other = write_key(tmp_path, "other")
        report = build(passing(), nooterra(**{"hosted.signing_key_file": str(private),
                                              "hosted.signature_key_id": "key_prod_1"}))  # fmt: skip
        path = tmp_path / "gates" / "hosted-baseline-evidence.json"
        reports.write(report, path)
        code, out, _ = run_cli("verify-report", str(path), "--public-key", str(public))
        assert code == 0, out
        assert f"signature verified ({public})" in out
        assert run_cli("verify-report", str(path), "--public-key", f"key_prod_1={public}")[0] == 0
        code, _, err = run_cli("verify-report", str(path), "--public-key", str(other))
        assert code == 2
        assert "does not verify with any given public key for keyId 'key_prod_1'" in err
        assert run_cli("verify-report", str(path), "--public-key", f"key_other={public}")[0] == 2
        code, out, _ = run_cli("verify-report", str(path))
        assert (code, "signature present, not verified" in out) == (0, True)

    def test_tampering_is_detected(self, tmp_path: Path) -> None:
        """An edited report fails its hash; a re-hashed edit fails the signature."""
        _, private, public = write_key(tmp_path, "signer")
        trusted = [reports_key(public)]
        report = build(passing(), nooterra(**{"hosted.signing_key_file": str(private)}))
        path = tmp_path / "evidence.json"
        edited = copy.deepcopy(report)
        edited["checks"]["metrics"]["metricCount"] = 24
        path.write_text(json.dumps(edited))
        with pytest.raises(ConfigError, match="artifactHash does not match"):
            reports.verify(path, trusted_keys=trusted)
        edited["artifactHash"] = independent_hash(edited)
        path.write_text(json.dumps(edited))
        assert reports.verify(path)["artifactHash"] == edited["artifactHash"]  # no key: hash only
        with pytest.raises(ConfigError, match="does not verify"):
            reports.verify(path, trusted_keys=trusted)

    def test_unsigned_report_with_keys_is_refused(self, tmp_path: Path) -> None:
        """Given public keys, an unsigned hosted report is refused; other gate reports are not affected."""
        _, _, public = write_key(tmp_path, "signer")
        path = tmp_path / "evidence.json"
        reports.write(build(passing()), path)
        with pytest.raises(ConfigError, match="not signed"):
            reports.verify(path, trusted_keys=[reports_key(public)])


def reports_key(path: Path) -> Any:
    """A trusted key as `gates verify-report --public-key` loads it."""
    from gates.signing import load_trusted_key

    return load_trusted_key(str(path))
