"""The systemd host tier: Oroboros on a real systemd (systemd-nspawn), certified over SSH."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from fixtures.oroboros.deployment import default_state_dir
from fixtures.registry import REFERENCES
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
    machine = f"gh-{zlib.crc32(str(state).encode()):08x}"
    found = [str(state)] if state.exists() else []
    found += subprocess.run(
        ["pgrep", "-af", f"--machine={machine}"], capture_output=True, text=True
    ).stdout.split("\n")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [line for line in links.splitlines() if f"ve-{machine}" in line]
    return [x for x in found if x.strip()]


class TestHealthyHost:
    """The provisioned host passes every gate over SSH, including the systemd checks."""

    def test_every_gate_passes_over_ssh(self, tmp_path: Path) -> None:
        """Both gates pass with the unit, user, hardening, env-file, cgroup and release checks included."""
        state = default_state_dir(f"selftest-{WORKER}-host")
        REF.down(state)
        args = REF.up(state)
        try:
            assert args[args.index("--target") + 1].startswith("ssh://root@10.")
            code, stdout, _ = run_cli("run", *args, "--out", str(tmp_path), "--quiet")
        finally:
            stopped = REF.down(state)
        assert code == 0, stdout
        assert stopped == 1
        topology = json.loads((tmp_path / "gates" / "runtime-topology.json").read_text())
        ids = {c["id"] for c in topology["checks"]}
        assert "systemd.unit.hardening[worker]" in ids
        assert "topology.listen.owned_by_unit[reverse-proxy]" in ids
        assert topology["verdict"]["passedChecks"] == topology["verdict"]["totalChecks"] > 100
        assert _leftovers(state) == []


@pytest.mark.parametrize("fault", REF.faults, ids=lambda f: f.id)
def test_host_fault_trips_exactly_its_checks(fault, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The host fault makes exactly its declared check instances fail or error, over SSH."""
    state = default_state_dir(f"selftest-{WORKER}-hostfault")
    code, tripped, stdout = run_with_fault(REF, state, fault.id, tmp_path)
    assert sorted(tripped) == sorted(fault.trips), stdout
    assert code == (1 if "fail" in tripped.values() else 3), stdout


def test_demo_certifies_the_host_end_to_end(tmp_path: Path) -> None:
    """`gates demo oroboros-host` boots the host, passes all four gates over SSH, and stops it again."""
    code, stdout, _ = run_cli("demo", "oroboros-host", "--out", str(tmp_path))
    assert code == 0, stdout
    reports = sorted(p.name for p in (tmp_path / "gates").glob("*.json"))
    assert reports == ["maintenance-timers.json", "runtime-health.json", "runtime-topology.json",
                       "worker-guardrails.json"]  # fmt: skip
    assert _leftovers(REF.state_dir().with_name("oroboros-host-demo")) == []
