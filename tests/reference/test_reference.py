"""End-to-end self-tests against the real reference deployment and every fault injector."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.procs import Proc, alive
from fixtures.registry import REFERENCES
from fixtures.state import default_state_dir
from gates import report as reports
from gates.testing import not_passing as not_ok
from gates.testing import run_cli, run_with_fault

REF = REFERENCES["oroboros"]
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="module")
def healthy() -> Iterator[list[str]]:
    """A healthy reference deployment; yields the `gates run` arguments that certify it."""
    state = default_state_dir(f"selftest-{WORKER}-healthy")
    REF.down(state)
    args = REF.up(state)
    try:
        yield args
    finally:
        REF.down(state)


class TestHealthyReference:
    """The healthy reference passes every gate, deterministically, without leaking secrets."""

    def test_every_gate_passes(self, healthy: list[str], tmp_path: Path) -> None:
        """`gates run` exits 0 and writes schema-valid, hash-consistent reports that all pass."""
        code, stdout, _ = run_cli("run", *healthy, "--out", str(tmp_path), "--quiet")
        assert code == 0, stdout
        for name in ("runtime-health", "runtime-topology"):
            body = reports.verify(tmp_path / "gates" / f"{name}.json")
            assert body["verdict"]["status"] == "pass"
            assert body["verdict"]["totalChecks"] == body["verdict"]["passedChecks"] > 0
        assert (tmp_path / "report.html").is_file()
        # The database password is the documented default, "postgres": it must not rewrite names and ids.
        junit = (tmp_path / "junit.xml").read_text()
        assert "<redacted>" not in junit
        assert 'name="test_postgres_accepting[postgres]"' in junit
        assert "<redacted>" not in (tmp_path / "run" / "results.ndjson").read_text()

    def test_drill_with_missing_command_is_an_error(self, healthy: list[str], tmp_path: Path) -> None:
        """A deploy command that does not exist errors every drill check (no false atomic_switch) and changes nothing."""
        args = [*healthy, "--gate", "deploy-rollback", "--allow-drills", "--set", "drill.candidate=c1",
                "--set", "drill.broken=b1", "--set", "drill.deploy_command=/nonexistent/deploy.sh {release}"]  # fmt: skip
        current = next(a.split("=", 1)[1] for a in healthy if a.startswith("paths.deploy_root="))
        before = os.readlink(f"{current}/current")
        code, stdout, _ = run_cli("run", *args, "--out", str(tmp_path), "--quiet")
        assert code == 3, stdout
        drill = json.loads((tmp_path / "gates" / "deploy-rollback.json").read_text())
        assert {(c["status"], c["failureCode"]) for c in drill["checks"]} == {("error", "probe_error")}
        assert all("/nonexistent/deploy.sh" in c["detail"]["message"] for c in drill["checks"])
        assert os.readlink(f"{current}/current") == before

    def test_same_state_same_artifact_hash(self, healthy: list[str], tmp_path: Path) -> None:
        """Two runs against the same deployment state produce identical artifactHash values."""
        hashes = []
        for i in (1, 2):
            code, stdout, _ = run_cli("run", *healthy, "--out", str(tmp_path / str(i)), "--quiet")
            assert code == 0, stdout
            hashes.append(
                {
                    p.name: json.loads(p.read_text())["artifactHash"]
                    for p in sorted((tmp_path / str(i) / "gates").glob("*.json"))
                }
            )
        assert hashes[0] == hashes[1]
        assert len(hashes[0]) == 2

    def test_single_gate_selection(self, healthy: list[str], tmp_path: Path) -> None:
        """`--gate runtime-health` writes only that report."""
        i = healthy.index("--gate")
        args = [*healthy[:i], *healthy[i + 4 :]]  # without the two --gate pairs `reference up` prints
        assert "--gate" not in args
        code, _, _ = run_cli("run", *args, "--gate", "runtime-health", "--out", str(tmp_path), "--quiet")
        assert code == 0
        assert sorted(p.name for p in (tmp_path / "gates").iterdir()) == ["runtime-health.json"]

    def test_secret_canary_never_reaches_artifacts(self, healthy: list[str], tmp_path: Path) -> None:
        """A secret supplied at run time appears in no file the run writes, nor on its console, even when checks
        fail on it."""
        canary = "canary-Zq7xK2pW9m"
        code, stdout, stderr = run_cli(
            "run", *healthy, "--gate", "running-state", "--set", f"postgres.password={canary}",
            "--out", str(tmp_path), "--quiet",
        )  # fmt: skip
        assert code == 1  # the wrong password fails the login and the env-file value check
        bad = not_ok(tmp_path)
        assert "health.postgres.database_connect[postgres]" in bad
        assert "config.env.values_exact[api]" in bad
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert len(files) >= 5
        leaked = [str(p) for p in files if canary in p.read_text(errors="replace")]
        assert leaked == []
        assert "blocking" in stdout
        assert canary not in stdout + stderr


@pytest.mark.parametrize("fault", REF.faults, ids=lambda f: f.id)
def test_fault_trips_exactly_its_checks(fault, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The fault makes exactly its declared check instances fail or error and leaves every other one passing."""
    state = default_state_dir(f"selftest-{WORKER}-fault")
    code, tripped, stdout = run_with_fault(REF, state, fault.id, tmp_path)
    assert sorted(tripped) == sorted(fault.trips), stdout
    assert code == (1 if "fail" in tripped.values() else 3), stdout


class TestLifecycle:
    """The reference starts in the background, prints how to certify it, and stops completely."""

    def test_up_prints_run_arguments_and_down_leaves_nothing(self, tmp_path: Path) -> None:
        """`reference up` ends stdout with the `gates run` arguments; `down` stops every process it started."""
        state = default_state_dir(f"selftest-{WORKER}-lifecycle")
        code, stdout, _ = run_cli("reference", "up", "oroboros", "--state-dir", str(state))
        try:
            assert code == 0
            last = stdout.strip().splitlines()[-1]
            assert last.startswith(
                "--profile oroboros --gate runtime-health --gate runtime-topology --set process_manager=none"
            )
            procs = [Proc.from_json(p) for p in json.loads((state / "state.json").read_text())["processes"]]
            assert len(procs) == 12
            assert all(alive(p) for p in procs)
            code, _, err = run_cli("reference", "up", "oroboros", "--state-dir", str(state))
            assert code == 3
            assert "already running" in err
        finally:
            code, stdout, _ = run_cli("reference", "down", "oroboros", "--state-dir", str(state))
        assert code == 0
        assert not any(alive(p) for p in procs)
        assert not state.exists()

    def test_nothing_running_never_passes(self, tmp_path: Path) -> None:
        """Against a deployment that is not running, `gates run` exits non-zero (listeners fail)."""
        state = default_state_dir(f"selftest-{WORKER}-gone")
        args = REF.up(state)
        REF.down(state)
        code, stdout, _ = run_cli("run", *args, "--out", str(tmp_path), "--quiet")
        assert code == 1, stdout
        assert "topology.listen.port_bound[api]" in not_ok(tmp_path)
