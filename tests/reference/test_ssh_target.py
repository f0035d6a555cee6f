"""The ssh:// target, end to end: the reference deployment certified through a real sshd."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures import sshd
from fixtures.procs import stop
from fixtures.registry import REFERENCES
from fixtures.state import default_state_dir
from gates.testing import not_passing as not_ok
from gates.testing import run_cli

REF = REFERENCES["oroboros"]
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="module")
def server() -> Iterator[sshd.SshServer]:
    """A real OpenSSH server on loopback; its client settings are exported for the suite."""
    srv = sshd.start(
        default_state_dir(f"selftest-{WORKER}-sshd"),
        sshd.free_port(offset=10 * int(WORKER.removeprefix("gw") or 0) if WORKER != "main" else 0),
    )
    saved = {k: os.environ.get(k) for k in srv.env()}
    os.environ.update(srv.env())
    try:
        yield srv
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop(srv.proc)


class TestSshTarget:
    """Commands run over SSH, and loopback services are probed through SSH port forwards."""

    def test_healthy_reference_passes_over_ssh(self, server: sshd.SshServer, tmp_path: Path) -> None:
        """Every gate passes when the healthy reference is certified through `--target ssh://`."""
        state = default_state_dir(f"selftest-{WORKER}-ssh-healthy")
        args = REF.up(state)
        try:
            code, stdout, _ = run_cli(
                "run", *args, "--target", server.target, "--out", str(tmp_path), "--quiet"
            )
        finally:
            REF.down(state)
        assert code == 0, stdout
        report = json.loads((tmp_path / "gates" / "runtime-topology.json").read_text())
        assert report["inputs"]["target"] == server.target

    def test_fault_is_seen_the_same_over_ssh(self, server: sshd.SshServer, tmp_path: Path) -> None:
        """A fault trips exactly its declared checks over SSH too."""
        fault = REF.fault("web-preview-1-bind-all")
        state = default_state_dir(f"selftest-{WORKER}-ssh-fault")
        args = REF.up(state, fault.id)
        try:
            code, stdout, _ = run_cli(
                "run", *args, "--target", server.target, "--out", str(tmp_path), "--quiet"
            )
        finally:
            REF.down(state)
        assert sorted(not_ok(tmp_path)) == sorted(fault.trips), stdout
        assert code == 1

    def test_unreachable_host_is_incomplete_not_failed(self, server: sshd.SshServer, tmp_path: Path) -> None:
        """When SSH cannot connect, every check errors and the run exits 3, never 0 or 1."""
        code, stdout, _ = run_cli("run", "--profile", "oroboros", "--target", "ssh://root@127.0.0.1:1",
                                "--out", str(tmp_path), "--quiet")  # fmt: skip
        assert code == 3, stdout
        reports = [json.loads(p.read_text()) for p in (tmp_path / "gates").glob("*.json")]
        checks = [
            c for r in reports if "components" not in r for c in r["checks"]
        ]  # roll-ups repeat components
        drills = {c["failureCode"] for c in checks if c["id"].startswith("release.deploy.")}
        assert drills == {"drill_not_allowed"}  # drills never run without --allow-drills
        assert {c["status"] for c in checks if c["failureCode"] != "drill_not_allowed"} == {"error"}
        readiness = next(r for r in reports if "components" in r)
        assert readiness["verdict"]["status"] == "incomplete"

    def test_nooterra_upgrade_drill_over_ssh(self, server: sshd.SshServer, tmp_path: Path) -> None:
        """The upgrade drill runs pg_dump, psql and the migrate commands over SSH and queries through forwards."""
        nooterra = REFERENCES["nooterra"]
        state = default_state_dir(f"selftest-{WORKER}-ssh-nooterra")
        nooterra.down(state)
        args = nooterra.up(state)
        gate_free = [a for i, a in enumerate(args) if a != "--gate" and (i == 0 or args[i - 1] != "--gate")]
        try:
            code, stdout, _ = run_cli("run", *gate_free, "--gate", "self-host-upgrade-migration", "--allow-drills",
                                      "--target", server.target, "--out", str(tmp_path), "--quiet")  # fmt: skip
        finally:
            nooterra.down(state)
        assert code == 0, stdout
        report = json.loads((tmp_path / "gates" / "self-host-upgrade-migration-gate.json").read_text())
        drill = [c for c in report["checks"] if c["id"].startswith("gates_drill_")]
        assert len(drill) == 6
        assert all(c["ok"] for c in drill)
