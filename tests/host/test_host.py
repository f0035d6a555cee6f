"""The systemd host tier: Oroboros on a real systemd (systemd-nspawn), certified over SSH."""

from __future__ import annotations

import json
import os
import shutil
import zlib
from pathlib import Path

import pytest

from fixtures.host import nspawn
from fixtures.registry import REFERENCES
from fixtures.state import default_state_dir
from gates.testing import run_cli, run_with_fault

REF = REFERENCES["oroboros-host"]
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")

_missing = [
    tool for tool in ("systemd-nspawn", "mmdebstrap", "nsenter", "ssh", "ip") if shutil.which(tool) is None
]
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or bool(_missing),
    reason=f"the systemd host tier needs root and {', '.join(_missing) or 'its tools'} (make bootstrap installs them)",
)


def _leftovers(state: Path) -> list[str]:
    """What of the host at ``state`` would still be there: its files, nspawn process, veth link."""
    return nspawn.leftovers(state, f"gh-{zlib.crc32(str(state).encode()):08x}")


GATES = ("deploy-rollback", "maintenance-timers", "preview-slots", "production-readiness", "running-state", "runtime-function",
         "runtime-health", "runtime-topology", "worker-guardrails")  # fmt: skip


class TestHealthyHost:
    """The provisioned host passes every gate over SSH, including the systemd checks and the drill."""

    def test_every_gate_passes_over_ssh(self, tmp_path: Path) -> None:
        """All gates pass with --allow-drills; the drill proves it left the host as found."""
        state = default_state_dir(f"selftest-{WORKER}-host")
        REF.down(state)
        args = REF.up(state)
        try:
            assert args[args.index("--target") + 1].startswith("ssh://root@10.")
            code, stdout, _ = run_cli("run", *args, "--allow-drills", "--out", str(tmp_path), "--quiet")
        finally:
            stopped = REF.down(state)
        assert code == 0, stdout
        assert stopped == 1
        assert sorted(p.stem for p in (tmp_path / "gates").glob("*.json")) == list(GATES)
        topology = json.loads((tmp_path / "gates" / "runtime-topology.json").read_text())
        ids = {c["id"] for c in topology["checks"]}
        assert "systemd.unit.hardening[worker]" in ids
        assert "topology.listen.owned_by_unit[reverse-proxy]" in ids
        assert topology["verdict"]["passedChecks"] == topology["verdict"]["totalChecks"] > 100
        drill = json.loads((tmp_path / "gates" / "deploy-rollback.json").read_text())
        restored = next(c for c in drill["checks"] if c["id"] == "release.drill.restored[current]")
        comparison = restored["detail"]["observed"]
        assert comparison["differences"] == []
        assert comparison["before"]["current"] == comparison["after"]["current"]
        assert comparison["before"]["registry"] == comparison["after"]["registry"]
        assert len(comparison["before"]["units"]) >= 7
        readiness = json.loads((tmp_path / "gates" / "production-readiness.json").read_text())
        assert [c["gate"] for c in readiness["components"]] == [
            "runtime-health", "runtime-topology", "maintenance-timers", "preview-slots", "worker-guardrails",
            "deploy-rollback", "running-state", "runtime-function",
        ]  # fmt: skip
        assert readiness["verdict"]["status"] == "pass"
        assert _leftovers(state) == []

    def test_without_drills_readiness_is_incomplete(self, tmp_path: Path) -> None:
        """Without --allow-drills the drill is reported not run, and readiness is incomplete (exit 3)."""
        state = default_state_dir(f"selftest-{WORKER}-host")
        REF.down(state)
        args = REF.up(state)
        try:
            code, stdout, _ = run_cli("run", *args, "--out", str(tmp_path), "--quiet")
        finally:
            REF.down(state)
        assert code == 3, stdout
        drill = json.loads((tmp_path / "gates" / "deploy-rollback.json").read_text())
        assert {c["failureCode"] for c in drill["checks"]} == {"drill_not_allowed"}
        readiness = json.loads((tmp_path / "gates" / "production-readiness.json").read_text())
        assert readiness["verdict"]["status"] == "incomplete"
        assert {b["checkId"] for b in readiness["blockingIssues"]} == {c["id"] for c in drill["checks"]}


@pytest.mark.parametrize("fault", REF.faults, ids=lambda f: f.id)
def test_host_fault_trips_exactly_its_checks(fault, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The host fault makes exactly its declared check instances fail or error, over SSH."""
    state = default_state_dir(f"selftest-{WORKER}-hostfault")
    code, tripped, stdout = run_with_fault(REF, state, fault.id, tmp_path, allow_drills=fault.drill)
    assert sorted(tripped) == sorted(fault.trips), stdout
    assert code == (1 if "fail" in tripped.values() else 3), stdout


def test_demo_certifies_the_host_end_to_end(tmp_path: Path) -> None:
    """`gates demo oroboros-host` boots the host, passes every gate (drill included) over SSH, and stops it."""
    code, stdout, _ = run_cli("demo", "oroboros-host", "--out", str(tmp_path))
    assert code == 0, stdout
    assert sorted(p.stem for p in (tmp_path / "gates").glob("*.json")) == list(GATES)
    assert _leftovers(REF.state_dir().with_name("oroboros-host-demo")) == []
