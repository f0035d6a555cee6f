"""The Nooterra loopback reference certified through the CLI: healthy, and every catalogued fault."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conformance.checks import load_suite
from fixtures.nooterra.deployment import default_state_dir
from fixtures.registry import REFERENCES
from gates import report as reports
from gates.testing import run_cli, run_with_fault

REF = REFERENCES["nooterra"]
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


def spend_for(trips: tuple[str, ...]) -> int | None:
    """The reference's spend allowance when a fault trips a paying check, else none (those checks stay not run)."""
    registry = load_suite()
    return REF.spend_cents if any(registry[t.split("[", 1)[0]].spends for t in trips) else None


def test_healthy_reference_passes_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`reference up nooterra` prints arguments that pass every gate with the reference's spend allowance;
    `down` stops everything."""
    state = default_state_dir(f"selftest-{WORKER}-live")
    REF.down(state)
    args = REF.up(state)
    for name, value in REF.environment:
        assert value not in " ".join(args)  # secrets never go on the command line
        monkeypatch.setenv(name, value)
    try:
        code, stdout, _ = run_cli(
            "run", *args, "--allow-spend-cents", str(REF.spend_cents), "--out", str(tmp_path), "--quiet"
        )
    finally:
        stopped = REF.down(state)
    assert code == 0, stdout
    body = reports.verify(tmp_path / "gates" / "nooterra-live.json")
    assert body["verdict"]["passedChecks"] == body["verdict"]["totalChecks"] >= 12
    for gate, checks in (("paid-call-e2e", 11), ("receipt-verification", 12)):
        body = reports.verify(tmp_path / "gates" / f"{gate}.json")
        assert body["verdict"]["passedChecks"] == body["verdict"]["totalChecks"] == checks
    (bundle,) = (tmp_path / "paid-call").iterdir()
    assert run_cli("verify-receipt", str(bundle))[0] == 0
    everything = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())
    assert "proxy-reference" not in everything  # the database password given with --set is scrubbed
    assert "tok_nooterra_ref_ops" not in everything  # so is the ops token
    assert stopped >= 6
    assert not state.exists()


@pytest.mark.parametrize("fault", REF.faults, ids=lambda f: f.id)
def test_fault_trips_exactly_its_checks(fault, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The fault makes exactly its declared check instances fail or error."""
    state = default_state_dir(f"selftest-{WORKER}-live-fault")
    code, tripped, stdout = run_with_fault(
        REF,
        state,
        fault.id,
        tmp_path,
        allow_spend_cents=spend_for(fault.trips),
        environ=dict(REF.environment),
    )
    assert sorted(tripped) == sorted(fault.trips), stdout
    assert code == (1 if "fail" in tripped.values() else 3), stdout
