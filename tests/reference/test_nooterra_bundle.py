"""End-to-end self-tests of the Nooterra bundle gates: the healthy bundle passes, every fault trips exactly its checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fixtures.nooterra.bundle_reference import profile_args
from fixtures.registry import REFERENCES
from fixtures.state import default_state_dir
from gates import report as reports
from gates.testing import run_cli, run_with_fault

REF = REFERENCES["nooterra-bundle"]
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
REPORTS = {
    "serving-mode-boundary-gate.json": "ServingModeBoundaryGateReport.v1",
    "self-host-topology-bundle-gate.json": "SelfHostTopologyBundleGateReport.v1",
    "self-host-upgrade-migration-gate.json": "SelfHostUpgradeMigrationGateReport.v1",
}


class TestHealthyBundle:
    """The healthy bundle passes all three gates, in upstream's report shapes, deterministically."""

    def test_every_gate_passes_in_upstream_shape(self, tmp_path: Path) -> None:
        """`gates run` exits 0 and writes the three upstream reports under their upstream file names."""
        state = default_state_dir(f"selftest-{WORKER}-bundle-healthy")
        args = REF.up(state)
        try:
            code, stdout, _ = run_cli("run", *args, "--out", str(tmp_path), "--quiet")
            assert code == 0, stdout
            assert sorted(p.name for p in (tmp_path / "gates").iterdir()) == sorted(REPORTS)
            for name, version in REPORTS.items():
                body = reports.verify(tmp_path / "gates" / name)
                assert body["schemaVersion"] == version
                assert body["verdict"] == {
                    "ok": True,
                    "status": "pass",
                    "totalChecks": len(body["checks"]),
                    "passedChecks": len(body["checks"]),
                    "failedChecks": 0,
                }
            upgrade = json.loads((tmp_path / "gates" / "self-host-upgrade-migration-gate.json").read_text())
            topology = state / "bundle" / "artifacts" / "gates" / "self-host-topology-bundle-gate.json"
            assert (
                upgrade["sources"]["topologyGate"]["artifactHash"]
                == json.loads(topology.read_text())["artifactHash"]
            )
            green = next(c for c in upgrade["checks"] if c["id"] == "self_host_topology_bundle_gate_green")
            assert green["failureCode"] == "self_host_topology_bundle_not_green"  # upstream's quirk on a pass
        finally:
            REF.down(state)

    def test_pinned_clock_gives_identical_reports(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With GATES_NOW and --captured-at fixed, two runs write byte-identical reports."""
        state = default_state_dir(f"selftest-{WORKER}-bundle-pinned")
        args = REF.up(state)
        monkeypatch.setenv(
            "GATES_NOW",
            json.loads(
                (state / "bundle" / "artifacts" / "gates" / "self-host-topology-bundle-gate.json").read_text()
            )["generatedAt"],
        )
        try:
            texts = []
            for i in (1, 2):
                out = tmp_path / str(i)
                code, stdout, _ = run_cli(
                    "run", *args, "--captured-at", "2026-03-25T00:00:00.000Z", "--out", str(out), "--quiet"
                )
                assert code == 0, stdout
                texts.append({n: (out / "gates" / n).read_bytes() for n in REPORTS})
            assert texts[0] == texts[1]
        finally:
            REF.down(state)

    def test_relative_bundle_path_is_reported_absolute(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A relative bundle.dir resolves against the working directory, and reports carry absolute paths."""
        state = default_state_dir(f"selftest-{WORKER}-bundle-relative")
        REF.up(state)
        monkeypatch.chdir(state)
        try:
            code, stdout, _ = run_cli(
                "run",
                *profile_args(Path("bundle")),
                "--gate",
                "self-host-topology-bundle",
                "--out",
                str(tmp_path),
                "--quiet",
            )
            assert code == 0, stdout
            body = json.loads((tmp_path / "gates" / "self-host-topology-bundle-gate.json").read_text())
            assert body["inputs"]["composePath"] == str(
                state / "bundle" / "deploy/compose/nooterra-self-host.topology.yml"
            )
        finally:
            REF.down(state)


@pytest.mark.parametrize("fault", REF.faults, ids=lambda f: f.id)
def test_fault_trips_exactly_its_checks(fault, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The fault fails exactly its declared check instances and leaves every other one passing; the run exits 1."""
    state = default_state_dir(f"selftest-{WORKER}-bundle-fault")
    code, tripped, stdout = run_with_fault(REF, state, fault.id, tmp_path)
    assert sorted(tripped) == sorted(fault.trips), stdout
    assert code == 1, stdout
    for name in REPORTS:
        reports.verify(tmp_path / "gates" / name)
