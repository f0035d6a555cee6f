"""The Nooterra loopback reference certified through the CLI: healthy, and every catalogued fault."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fixtures.nooterra import deployment as dep
from fixtures.nooterra.deployment import default_state_dir
from fixtures.registry import REFERENCES
from gates import report as reports
from gates.testing import run_cli, run_with_fault

REF = REFERENCES["nooterra"]
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


def test_healthy_reference_passes_and_leaves_nothing(tmp_path: Path) -> None:
    """`reference up nooterra` prints arguments that pass all four gates; `down` stops everything."""
    state = default_state_dir(f"selftest-{WORKER}-live")
    REF.down(state)
    args = REF.up(state)
    try:
        code, stdout, _ = run_cli("run", *args, "--out", str(tmp_path), "--quiet")
    finally:
        stopped = REF.down(state)
    assert code == 0, stdout
    body = reports.verify(tmp_path / "gates" / "nooterra-live.json")
    assert body["verdict"]["passedChecks"] == body["verdict"]["totalChecks"] >= 55
    readiness = reports.verify(tmp_path / "gates" / "production-readiness.json")
    assert [c["gate"] for c in readiness["components"]] == [
        "nooterra-live", "serving-mode-boundary", "self-host-topology-bundle", "self-host-upgrade-migration"
    ]  # fmt: skip
    for name in (
        "serving-mode-boundary-gate",
        "self-host-topology-bundle-gate",
        "self-host-upgrade-migration-gate",
    ):
        assert reports.verify(tmp_path / "gates" / f"{name}.json")["verdict"]["ok"] is True
    for written in (tmp_path / "gates").glob("*.json"):
        text = written.read_text()
        # the database password, ops token and gateway key secret given to the run are scrubbed
        assert "proxy-reference" not in text, written
        assert dep.OPS_TOKEN not in text, written
    assert stopped >= 6
    assert not state.exists()


@pytest.mark.parametrize("fault", REF.faults, ids=lambda f: f.id)
def test_fault_trips_exactly_its_checks(fault, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The fault makes exactly its declared check instances fail or error."""
    state = default_state_dir(f"selftest-{WORKER}-live-fault")
    code, tripped, stdout = run_with_fault(REF, state, fault.id, tmp_path)
    assert sorted(tripped) == sorted(fault.trips), stdout
    assert code == (1 if "fail" in tripped.values() else 3), stdout
