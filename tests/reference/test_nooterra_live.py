"""The Nooterra loopback reference certified through the CLI: healthy, and every catalogued fault."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conformance.checks import load_suite
from fixtures.nooterra import deployment as dep
from fixtures.nooterra.deployment import SCHEMA, Plan, db_dsn, default_state_dir
from fixtures.registry import REFERENCES
from fixtures.state import read_state
from gates import formats
from gates import report as reports
from gates.formats.hosted_baseline import ROWS
from gates.signing import load_trusted_key
from gates.testing import not_passing, run_cli, run_with_fault

HOSTED_CHECKS = frozenset(ROWS.values())

REF = REFERENCES["nooterra"]
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


def _ports(state: Path) -> Plan:
    """The running instance's ports, as a plan to derive its database DSN from."""
    return Plan(state=state, ports={str(k): int(v) for k, v in read_state(state)["ports"].items()})


DRILL_CHECKS = sorted(
    f"upgrade.drill.{c}[postgres]"
    for c in ("backup_manifest", "restore_matches", "migration_advances", "rollback_restores", "scratch_removed",
              "source_unchanged")
)  # fmt: skip
UPGRADE_REPORT = "self-host-upgrade-migration-gate.json"


def _drill_checks(out: Path) -> dict[str, dict[str, Any]]:
    """The upgrade report's drill checks by check instance id."""
    body = reports.verify(out / "gates" / UPGRADE_REPORT)
    ids = formats.get("nooterra-self-host-upgrade-migration").instance_ids()
    return {ids[c["id"]]: c for c in body["checks"] if c["id"].startswith("gates_drill_")}


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


def spend_for(trips: tuple[str, ...]) -> int | None:
    """The reference's spend allowance when a fault trips a paying check, else none (those checks stay not run)."""
    registry = load_suite()
    return REF.spend_cents if any(registry[t.split("[", 1)[0]].spends for t in trips) else None


def test_healthy_reference_passes_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`reference up nooterra` prints arguments that pass all Nooterra gates, the upgrade drill included.

    Without --allow-drills the upgrade gate (and so production-readiness) is incomplete (exit 3) with
    exactly the drill checks not run; with it every gate passes and the database holds nothing but the
    production schema afterwards; a scratch target equal to the production schema is refused. No
    paid call is made only with the reference's spend allowance (without it production-readiness names
    it as not run), and its bundle verifies offline. No secret given to the runs reaches any file they
    write, and none is on the command line. The hosted-baseline evidence is signed with a
    key of the test's own and verified with its public key. `down` stops everything.
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
    for name, value in REF.environment:
        assert value not in " ".join(args)  # secrets never go on the command line
        monkeypatch.setenv(name, value)
    runs = {name: tmp_path / name for name in ("plain", "drills", "refused")}
    try:
        plain = run_cli("run", *args, "--out", str(runs["plain"]), "--quiet")
        drills = run_cli("run", *args, *signing, "--allow-drills",
                         "--allow-spend-cents", str(REF.spend_cents), "--out", str(runs["drills"]), "--quiet")  # fmt: skip
        refused = run_cli("run", *args, "--allow-drills", "--set", f"drill.scratch_schema={SCHEMA}",
                          "--out", str(runs["refused"]), "--quiet")  # fmt: skip
        with psycopg.connect(db_dsn(_ports(state))) as conn:
            schemas = {
                r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg_%'")
            }
    finally:
        stopped = REF.down(state)
    assert plain[0] == 3, plain[1]
    body = reports.verify(runs["plain"] / "gates" / "nooterra-live.json")
    assert body["verdict"]["passedChecks"] == body["verdict"]["totalChecks"] >= 55
    not_run = _drill_checks(runs["plain"])
    assert sorted(not_run) == DRILL_CHECKS
    assert {c["failureCode"] for c in not_run.values()} == {"drill_not_allowed"}
    assert not_passing(runs["plain"]) == {}
    readiness = reports.verify(runs["plain"] / "gates" / "production-readiness.json")
    unpaid = {
        b["checkId"] for b in readiness["blockingIssues"] if b.get("failureCode") == "spend_not_allowed"
    }
    assert {"x402.offer.payment_required[exa-search]", "x402.receipt.present[exa-search]"} <= unpaid

    assert drills[0] == 0, drills[1]
    readiness = reports.verify(runs["drills"] / "gates" / "production-readiness.json")
    assert [c["gate"] for c in readiness["components"]] == [
        "nooterra-live", "serving-mode-boundary", "self-host-topology-bundle", "self-host-upgrade-migration",
        "paid-call-e2e", "receipt-verification", "running-state",
    ]  # fmt: skip
    for gate, checks in (("paid-call-e2e", 11), ("receipt-verification", 13)):
        paid = reports.verify(runs["drills"] / "gates" / f"{gate}.json")
        assert paid["verdict"]["passedChecks"] == paid["verdict"]["totalChecks"] == checks
    (bundle,) = (runs["drills"] / "paid-call").iterdir()
    assert run_cli("verify-receipt", str(bundle))[0] == 0
    for name in ("serving-mode-boundary-gate", "self-host-topology-bundle-gate", UPGRADE_REPORT[:-5]):
        assert reports.verify(runs["drills"] / "gates" / f"{name}.json")["verdict"]["ok"] is True
    evidence = reports.verify(
        runs["drills"] / "gates" / "hosted-baseline-evidence.json",
        trusted_keys=[load_trusted_key(str(public))],
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
    checks = _drill_checks(runs["drills"])
    assert sorted(checks) == DRILL_CHECKS
    assert all(c["ok"] for c in checks.values())
    manifest = checks["upgrade.drill.backup_manifest[postgres]"]["detail"]["manifest"]
    assert manifest["schemaVersion"] == "SelfHostUpgradeBackupManifest.v1"
    assert [a["path"] for a in manifest["artifacts"]] == [f"postgres/{SCHEMA}.sql"]
    migration = checks["upgrade.drill.migration_advances[postgres]"]["detail"]
    assert (migration["versionBefore"]["max"], migration["versionAfter"]["max"]) == ("1", "2")
    for run in runs.values():
        for path in run.rglob("*"):
            if path.is_file():
                text = path.read_text(errors="replace")
                # the database password and ops token given with --set are scrubbed
                assert "proxy-reference" not in text, path
                assert dep.OPS_TOKEN not in text, path
                assert dep.FINANCE_TOKEN not in text, path
                assert "PRIVATE KEY" not in text, path
                assert "gates-upgrade-drill." not in text, path  # the random scratch directory stays out

    assert refused[0] == 3, refused[1]
    errors = _drill_checks(runs["refused"])
    assert {c["failureCode"] for c in errors.values()} == {"drill_refused"}
    assert schemas == {"public", SCHEMA, "information_schema"}
    assert stopped >= 6
    assert not state.exists()


# What the hosted-baseline evidence says, in upstream's words, for the faults aimed at its probes.
HOSTED_FAILURES = {
    "s8-config-missing": ["s8 rollout guard check failed (s8_rollout_config_missing)"],
    "billing-catalog-missing-plan": ["billing catalog/quotas check failed"],
    "billing-catalog-malformed": ["billing catalog/quotas check failed"],
    "metrics-missing-series": ["metrics check failed"],
    "rate-limit-5xx": ["rate-limit probe failed for mode=required"],
}


@pytest.mark.parametrize("fault", REF.faults, ids=lambda f: f.id)
def test_fault_trips_exactly_its_checks(fault, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The fault makes exactly its declared check instances fail or error; the hosted evidence agrees."""
    state = default_state_dir(f"selftest-{WORKER}-live-fault")
    code, tripped, stdout = run_with_fault(
        REF,
        state,
        fault.id,
        tmp_path,
        allow_drills=fault.drill,
        allow_spend_cents=spend_for(fault.trips),
        environ=dict(REF.environment),
    )
    assert sorted(tripped) == sorted(fault.trips), stdout
    assert code == (1 if "fail" in tripped.values() else 3), stdout
    evidence = reports.verify(tmp_path / "gates" / "hosted-baseline-evidence.json")
    hosted_tripped = {t.split("[", 1)[0] for t in tripped} & set(HOSTED_CHECKS)
    assert (evidence["status"] == "fail") is bool(hosted_tripped), evidence["failures"]
    if fault.id in HOSTED_FAILURES:
        assert evidence["failures"] == HOSTED_FAILURES[fault.id]
