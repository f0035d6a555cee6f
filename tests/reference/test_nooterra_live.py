"""The Nooterra loopback reference certified through the CLI: healthy, and every catalogued fault."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fixtures.nooterra import deployment as dep
from fixtures.nooterra.deployment import default_state_dir
from fixtures.registry import REFERENCES
from gates import report as reports
from gates.formats.hosted_baseline import ROWS
from gates.signing import load_trusted_key
from gates.testing import run_cli, run_with_fault

HOSTED_CHECKS = frozenset(ROWS.values())

REF = REFERENCES["nooterra"]
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


def _key_pair(where: Path) -> tuple[Ed25519PrivateKey, Path, Path]:
    """A throwaway Ed25519 key: the key, its PKCS#8 private PEM and its SPKI public PEM."""
    key = Ed25519PrivateKey.generate()
    where.mkdir()
    private, public = where / "evidence-signing.pem", where / "evidence-signing.pub.pem"
    pem, spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    private.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(key.public_key().public_bytes(pem, spki))
    return key, private, public


def test_healthy_reference_passes_and_leaves_nothing(tmp_path: Path) -> None:
    """`reference up nooterra` prints arguments that pass every gate; `down` stops everything.

    The hosted-baseline evidence is signed with a key of the test's own and verified with its public key.
    """
    key, private, public = _key_pair(tmp_path / "keys")
    signing = [
        "--set",
        f"hosted.signing_key_file={private}",
        "--set",
        "hosted.signature_key_id=key_reference",
    ]
    state = default_state_dir(f"selftest-{WORKER}-live")
    REF.down(state)
    args = REF.up(state)
    out = tmp_path / "out"
    try:
        code, stdout, _ = run_cli("run", *args, *signing, "--out", str(out), "--quiet")
    finally:
        stopped = REF.down(state)
    assert code == 0, stdout
    body = reports.verify(out / "gates" / "nooterra-live.json")
    assert body["verdict"]["passedChecks"] == body["verdict"]["totalChecks"] >= 55
    readiness = reports.verify(out / "gates" / "production-readiness.json")
    # hosted-baseline is a component only for hosted deployments; this one declares self-host
    assert [c["gate"] for c in readiness["components"]] == [
        "nooterra-live", "serving-mode-boundary", "self-host-topology-bundle", "self-host-upgrade-migration"
    ]  # fmt: skip
    evidence = reports.verify(
        out / "gates" / "hosted-baseline-evidence.json", trusted_keys=[load_trusted_key(str(public))]
    )
    assert (evidence["type"], evidence["status"], evidence["failures"]) == (
        "HostedBaselineEvidence.v1",
        "pass",
        [],
    )
    assert evidence["checks"]["s8ApprovalRollout"]["policySummary"]["highRiskActionTypesCount"] == 4
    assert evidence["checks"]["rateLimitProbe"]["saw429"] is True
    assert "dbLatencyMs" not in evidence["checks"]["healthz"]["body"]
    signature = base64.b64decode(evidence["signature"]["signatureBase64"])
    key.public_key().verify(signature, bytes.fromhex(evidence["artifactHash"]))
    for name in (
        "serving-mode-boundary-gate",
        "self-host-topology-bundle-gate",
        "self-host-upgrade-migration-gate",
    ):
        assert reports.verify(out / "gates" / f"{name}.json")["verdict"]["ok"] is True
    for written in (out / "gates").glob("*.json"):
        text = written.read_text()
        # the database password, ops and finance tokens and gateway key secret given to the run are scrubbed
        assert "proxy-reference" not in text, written
        assert dep.OPS_TOKEN not in text, written
        assert dep.FINANCE_TOKEN not in text, written
        assert "PRIVATE KEY" not in text, written
    assert stopped >= 6
    assert not state.exists()


# What the hosted-baseline evidence says, in upstream's words, for the faults aimed at its probes.
HOSTED_FAILURES = {
    "s8-policy-missing": ["s8 rollout guard check failed (s8_approval_policy_missing)"],
    "s8-policy-threshold-invalid": ["s8 rollout guard check failed (s8_approval_policy_threshold_invalid)"],
    "s8-policy-no-action-types": ["s8 rollout guard check failed (s8_approval_policy_action_types_invalid)"],
    "s8-config-missing": ["s8 rollout guard check failed (s8_rollout_config_missing)"],
    "billing-catalog-missing-plan": ["billing catalog/quotas check failed"],
    "billing-catalog-malformed": ["billing catalog/quotas check failed"],
    "finance-token-unscoped": ["billing catalog/quotas check failed"],
    "maintenance-schedulers-disabled": ["required maintenance schedulers are not enabled"],
    "metrics-missing-series": ["metrics check failed"],
    "rate-limit-5xx": ["rate-limit probe failed for mode=required"],
}


@pytest.mark.parametrize("fault", REF.faults, ids=lambda f: f.id)
def test_fault_trips_exactly_its_checks(fault, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The fault makes exactly its declared check instances fail or error; the hosted evidence agrees."""
    state = default_state_dir(f"selftest-{WORKER}-live-fault")
    code, tripped, stdout = run_with_fault(REF, state, fault.id, tmp_path)
    assert sorted(tripped) == sorted(fault.trips), stdout
    assert code == (1 if "fail" in tripped.values() else 3), stdout
    evidence = reports.verify(tmp_path / "gates" / "hosted-baseline-evidence.json")
    hosted_tripped = {t.split("[", 1)[0] for t in tripped} & set(HOSTED_CHECKS)
    assert (evidence["status"] == "fail") is bool(hosted_tripped), evidence["failures"]
    if fault.id in HOSTED_FAILURES:
        assert evidence["failures"] == HOSTED_FAILURES[fault.id]
