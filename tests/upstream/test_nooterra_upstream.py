"""The real upstream Nooterra, certified: observed verdicts equal the committed table, and upstream's own tools agree.

One instance of the ``nooterra-upstream`` reference (upstream's services from the shared source snapshot, in
their own network namespace) is certified once with every gate, drills and the paid call included. Then:

- every check's verdict equals ``nooterra_upstream_verdicts.yaml`` exactly (no unlisted, no missing check), and
  every non-pass there carries its upstream ``file:line``;
- upstream's receipt verifier, run on every receipt the certification wrote, reports no error that a failing
  check of ours does not report by name (``receiptVerifier.gaps`` lists the exceptions exactly: none);
- upstream's three gate scripts, run on the same bundle, reach the same verdicts as ours, with equal hashes
  for each of upstream's checks; upstream's upgrade gate accepts our topology report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conformance.canonical import canonical_hash
from fixtures.nooterra_upstream import deployment, source

TABLE = Path(__file__).with_name("nooterra_upstream_verdicts.yaml")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SPEND_CENTS = 1000
# A second, paid-only certification with its own paid path (a new gate): no /ops probe runs beside it, so it
# never meets the race the table's `races` describe, and upstream's verifier always has a receipt to judge.
PAID_ONLY = ("--gate", "paid-call-e2e", "--gate", "receipt-verification",
             "--set", "paid.path=/exa/search?q=gates-upstream-paid-only&numResults=1")  # fmt: skip
# report file -> gate (the upstream-shaped reports carry no gate name)
REPORTS = {
    "nooterra-live.json": "nooterra-live",
    "serving-mode-boundary-gate.json": "serving-mode-boundary",
    "self-host-topology-bundle-gate.json": "self-host-topology-bundle",
    "self-host-upgrade-migration-gate.json": "self-host-upgrade-migration",
    "paid-call-e2e.json": "paid-call-e2e",
    "receipt-verification.json": "receipt-verification",
    "hosted-baseline-evidence.json": "hosted-baseline",
    "running-state.json": "running-state",
    "runtime-function.json": "runtime-function",
    "production-readiness.json": "production-readiness",
}
UPSTREAM_GATES = (
    "serving-mode-boundary-gate",
    "self-host-topology-bundle-gate",
    "self-host-upgrade-migration-gate",
)

pytestmark = pytest.mark.skipif(
    not source.default_source().is_file(), reason=f"no upstream snapshot at {source.default_source()}"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Certified:
    """A certified instance: its source tree, bundle, reports and observed verdicts."""

    tree: Path
    bundle: Path
    out: Path
    paid_out: Path
    exit_code: int
    checks: dict[str, str]
    gates: dict[str, str]


def _table() -> dict[str, Any]:
    raw = yaml.safe_load(TABLE.read_text())
    assert isinstance(raw, dict)
    return raw


def _observed(out: Path) -> tuple[dict[str, str], dict[str, str]]:
    checks: dict[str, str] = {}
    for line in (out / "run" / "results.ndjson").read_text().splitlines():
        row = json.loads(line)
        checks[row["id"]] = row["outcome"]
    gates: dict[str, str] = {}
    for name, gate in REPORTS.items():
        report = json.loads((out / "gates" / name).read_text())
        verdict = report.get("verdict")
        gates[gate] = verdict["status"] if isinstance(verdict, dict) else report["status"]
        for issue in report.get("blockingIssues", []):  # a required check without an instance
            check_id = issue.get("checkId") if isinstance(issue, dict) else None
            if check_id and check_id not in checks and not str(check_id).startswith("gate.verdict."):
                checks[check_id] = issue["status"]
    return checks, gates


def _certify(args: list[str], out: Path) -> int:
    argv = [sys.executable, "-m", "gates", "run", *args, "--out", str(out),
            "--allow-drills", "--allow-spend-cents", str(SPEND_CENTS), "--quiet"]  # fmt: skip
    env = {**os.environ, **deployment.ENVIRONMENT}
    done = subprocess.run(argv, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    return done.returncode


def _failing(out: Path) -> dict[str, str]:
    """Each failing check instance, with its result row as text (its failure codes are in it)."""
    rows = [json.loads(line) for line in (out / "run" / "results.ndjson").read_text().splitlines()]
    return {row["id"]: json.dumps(row) for row in rows if row["outcome"] == "fail"}


@pytest.fixture(scope="module")
def certified(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Certified]:
    """Bring the reference up once, certify it (every gate, then the paid gates alone), stop it."""
    state = Path(tempfile.gettempdir()) / f"gates-{os.geteuid()}" / "reference" / f"upstream-t{os.getpid()}"
    out = tmp_path_factory.mktemp("upstream-certification")
    paid_out = tmp_path_factory.mktemp("upstream-paid-only")
    args = deployment.up(state)
    try:
        code = _certify(args, out)
        gate_at = {i for i, a in enumerate(args) if a == "--gate"}
        paid_args = [a for i, a in enumerate(args) if i not in gate_at and i - 1 not in gate_at]
        _certify([*paid_args, *PAID_ONLY], paid_out)
        checks, gates = _observed(out)
        yield Certified(tree=source.prepare(None), bundle=state / "bundle", out=out, paid_out=paid_out,
                        exit_code=code, checks=checks, gates=gates)  # fmt: skip
    finally:
        deployment.down(state)


def test_table_names_upstream_evidence_for_every_non_pass() -> None:
    """Each expected non-pass, and each race, says which upstream file:line causes it, and whether it is a false
    verdict of the suite."""
    table = _table()
    entries = [
        (check_id, entry) for check_id, entry in table["checks"].items() if entry["expected"] != "pass"
    ]
    for check_id, entry in [*entries, *table["races"].items()]:
        assert ":" in str(entry.get("upstream", "")), check_id
        assert entry.get("reason"), check_id
        assert isinstance(entry.get("falseVerdict"), bool), check_id


def test_check_verdicts_equal_the_table(certified: Certified) -> None:
    """Every observed check verdict is the table's, and the table lists no check the run did not have."""
    table = _table()["checks"]
    expected = {check_id: entry["expected"] for check_id, entry in table.items()}
    allowed = {check_id: {entry["expected"]} for check_id, entry in table.items()}
    for race in _table()["races"].values():
        for check_id in race["checks"]:
            allowed[check_id] |= set(race["also"])
    unlisted = sorted(set(certified.checks) - set(expected))
    missing = sorted(set(expected) - set(certified.checks))
    differing = {k: (certified.checks[k], expected[k]) for k in expected if k in certified.checks
                 and certified.checks[k] not in allowed[k]}  # fmt: skip
    assert (unlisted, missing, differing) == ([], [], {}), "observed vs table (observed, expected)"


def test_gate_verdicts_equal_the_table(certified: Certified) -> None:
    """Each gate's verdict, and the run's exit code, follow from the table."""
    expected = _table()["gates"]
    allowed = {gate: {verdict} for gate, verdict in expected.items()}
    for race in _table()["races"].values():
        assert ":" in race["upstream"]
        for gate, also in race["gates"].items():
            allowed[gate] |= set(also)
    assert set(certified.gates) == set(expected)
    assert {g: v for g, v in certified.gates.items() if v not in allowed[g]} == {}
    assert certified.exit_code == (1 if "fail" in certified.gates.values() else 0)


def _verify_receipt(tree: Path, receipt: Path) -> list[str]:
    done = subprocess.run(["node", "bin/nooterra.js", "x402", "receipt", "verify", str(receipt), "--format", "json"],
                          cwd=tree, capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode in (0, 1), done.stderr[-1000:]
    report = json.loads(done.stdout)
    return sorted({str(e["code"]) for e in report.get("errors", [])})


def test_upstream_receipt_verifier_is_never_stricter_unnoticed(certified: Certified) -> None:
    """Every error of upstream's verifier maps to a failing check of ours that names it, except the table's gaps."""
    table = _table()["receiptVerifier"]
    gaps: set[str] = set()
    judged = 0
    for out in (certified.out, certified.paid_out):
        failing = _failing(out)
        for receipt in sorted(out.glob("paid-call/*/receipt.json")):
            judged += 1
            for code in _verify_receipt(certified.tree, receipt):
                mapped = table["codes"].get(code)
                if mapped is None:
                    gaps.add(code)
                    continue
                check_id = mapped["check"]
                assert check_id in failing, f"upstream reports {code} on {receipt}; {check_id} does not fail"
                assert any(name in failing[check_id] for name in mapped["names"]), (
                    f"upstream reports {code} on {receipt}; {check_id} fails without naming any of {mapped['names']}"
                )
    assert judged, "the certifications wrote no receipt"
    assert sorted(gaps) == sorted(table["gaps"]), "upstream verifier errors no check of ours reports"


def _upstream_gate(tree: Path, bundle: Path, name: str, report: Path, *extra: str) -> dict[str, Any]:
    done = subprocess.run(["node", str(tree / "scripts" / "ci" / f"run-{name}.mjs"), "--report", str(report), *extra],
                          cwd=bundle, capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode in (0, 1), done.stderr[-1000:]
    loaded = json.loads(report.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize("name", UPSTREAM_GATES)
def test_upstream_gate_scripts_agree(certified: Certified, name: str, tmp_path: Path) -> None:
    """Upstream's gate on the same bundle: each of its checks hashes equal to ours, and the verdicts agree."""
    theirs = _upstream_gate(certified.tree, certified.bundle, name, tmp_path / f"{name}.json")
    ours = json.loads((certified.out / "gates" / f"{name}.json").read_text())
    our_checks = {c["id"]: c for c in ours["checks"]}
    for check in theirs["checks"]:
        assert check["id"] in our_checks, check["id"]
        assert canonical_hash(our_checks[check["id"]]) == canonical_hash(check), check["id"]
    extension_failures = {c["id"] for c in ours["checks"] if not c["ok"]} - {
        c["id"] for c in theirs["checks"]
    }
    assert ours["verdict"]["ok"] == (theirs["verdict"]["ok"] and not extension_failures)
    table_gate = REPORTS[f"{name}.json"]
    assert ("pass" if theirs["verdict"]["ok"] else "fail") == "pass", f"upstream's {table_gate} gate fails"


def test_upstream_topology_report_is_ours(certified: Certified) -> None:
    """The topology report upstream's gate wrote at start-up and ours hash alike (same bundle, same checks)."""
    theirs = json.loads(
        (certified.bundle / "artifacts" / "gates" / "self-host-topology-bundle-gate.json").read_text()
    )
    ours = json.loads((certified.out / "gates" / "self-host-topology-bundle-gate.json").read_text())
    assert ours["artifactHash"] == theirs["artifactHash"]


def test_upstream_upgrade_gate_accepts_our_topology_report(certified: Certified, tmp_path: Path) -> None:
    """Upstream's upgrade gate, fed the topology report this suite wrote, passes."""
    ours = certified.out / "gates" / "self-host-topology-bundle-gate.json"
    report = _upstream_gate(certified.tree, certified.bundle, "self-host-upgrade-migration-gate",
                            tmp_path / "upgrade.json", "--topology-gate", str(ours))  # fmt: skip
    assert report["verdict"]["ok"] is True, [c for c in report["checks"] if not c["ok"]]
    assert report["inputs"]["topologyGateReportPath"] == str(ours)
