"""The health-dependency drill on the real upstream systems: verdicts, faults that trip exactly their checks, as found.

Each upstream reference is brought up once for its class. The drill (`--gate health-dependencies
--allow-drills`, the reference declaring itself disposable) must reach the verdicts of
``health_drill_verdicts.yaml`` (each non-pass with the upstream file:line behind it), write its timings apart from
the report (the same deployment twice gives the same artifactHash), and leave the deployment as found. Each fault
of `fixtures.*.health_faults` applied in place trips exactly its declared checks beyond the healthy ones; after
its revert the drill sees the healthy deployment again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conformance import _schemas
from fixtures import netns as oro_netns
from fixtures.nooterra_upstream import deployment as noo
from fixtures.nooterra_upstream import health_faults as noo_faults
from fixtures.nooterra_upstream import source as noo_source
from fixtures.oroboros_upstream import deployment as oro
from fixtures.oroboros_upstream import health_faults as oro_faults
from fixtures.oroboros_upstream import release as oro_release
from fixtures.registry import REFERENCES
from fixtures.state import default_state_dir, read_state
from gates import report as reports

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TABLE = yaml.safe_load(Path(__file__).with_name("health_drill_verdicts.yaml").read_text())["references"]
GATE = "health-dependencies"


def _without_gates(args: list[str]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--gate":
            skip = True
        else:
            out.append(a)
    return out


def certify(args: list[str], out: Path, *extra: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """Run the drill's gate; the verified report (statuses by check instance, verdict, artifactHash)."""
    argv = [sys.executable, "-m", "gates", "run", *args, "--gate", GATE, "--allow-drills", *extra,
            "--out", str(out), "--quiet"]  # fmt: skip
    done = subprocess.run(argv, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})})  # fmt: skip
    assert done.returncode in (0, 1, 3), done.stdout[-3000:] + done.stderr[-3000:]
    body = reports.verify(out / "gates" / f"{GATE}.json")
    return {
        "code": done.returncode,
        "verdict": body["verdict"]["status"],
        "statuses": {c["id"]: c["status"] for c in body["checks"]},
        "artifactHash": body["artifactHash"],
    }


def _status(entry: str | dict[str, str]) -> str:
    return entry if isinstance(entry, str) else entry["status"]


def expected(reference: str) -> tuple[str, dict[str, str]]:
    """The table's verdict and statuses for ``reference``."""
    t = TABLE[reference]
    return _status(t["verdict"]), {c: _status(s) for c, s in t["checks"].items()}


def check_timings(out: Path, dependencies: set[str]) -> None:
    """The timings file is schema-valid evidence beside the report, one entry per dependency, every noticed
    answer with a time and every vacuous one without."""
    doc = json.loads((out / "health-drill" / "timings.json").read_text())
    _schemas.validate(doc, "health-drill-timings", source="timings.json")
    assert set(doc["dependencies"]) == dependencies
    assert set(doc["boundsSeconds"]) == dependencies


def tripped(seen: dict[str, str], healthy: dict[str, str]) -> list[str]:
    """Check instances not passing now that passed on the healthy deployment."""
    return sorted(c for c, s in seen.items() if s != "pass" and healthy.get(c) == "pass")


def test_every_non_pass_names_upstream_evidence() -> None:
    """Each expected non-pass names an upstream file:line that exists in that snapshot, and a reason."""
    trees = {"oroboros-upstream": oro_release.extract, "nooterra-upstream": lambda: noo_source.prepare(None)}
    for reference, table in TABLE.items():
        entries = [table["verdict"], *table["checks"].values()]
        for entry in (e for e in entries if not isinstance(e, str)):
            path, _, line = entry["upstream"].partition(":")
            assert entry["reason"].strip()
            tree = trees[reference]()
            assert len((tree / path).read_text().splitlines()) >= int(line), entry


# --- Nooterra ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def noo_state() -> Iterator[Path]:
    state = default_state_dir(f"selftest-health-drill-nooterra-{os.getpid()}")
    noo.down(state)
    noo.up(state)
    try:
        yield state
    finally:
        noo.down(state)


@pytest.fixture(scope="module")
def noo_args(noo_state: Path) -> list[str]:
    return _without_gates(list(read_state(noo_state)["args"]))


@pytest.fixture(scope="module")
def noo_healthy(noo_args: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("healthy")
    seen = certify(noo_args, out, env=dict(REFERENCES["nooterra-upstream"].environment))
    check_timings(out, {"postgres"})
    return seen


@pytest.mark.skipif(
    not noo_source.default_source().is_file() and os.environ.get("CI", "").lower() != "true",
    reason=f"no upstream snapshot at {noo_source.default_source()}",
)
class TestNooterra:
    """The real Nooterra: /healthz depends on PostgreSQL."""

    def test_verdicts_equal_the_table(self, noo_healthy: dict[str, object]) -> None:
        """The drill's verdict and every status are the table's."""
        verdict, statuses = expected("nooterra-upstream")
        assert (noo_healthy["verdict"], noo_healthy["statuses"]) == (verdict, statuses)

    def test_same_deployment_same_hash(
        self, noo_args: list[str], noo_healthy: dict[str, object], tmp_path: Path
    ) -> None:
        """Timings stay out of the report: the drill run again on the same deployment hashes the same."""
        again = certify(noo_args, tmp_path, env=dict(REFERENCES["nooterra-upstream"].environment))
        assert again["artifactHash"] == noo_healthy["artifactHash"]

    @pytest.mark.parametrize("fault_id", [f.id for f in noo_faults.faults(Path("/"))])
    def test_fault_trips_exactly_its_checks(
        self,
        fault_id: str,
        noo_state: Path,
        noo_args: list[str],
        noo_healthy: dict[str, object],
        tmp_path: Path,
    ) -> None:
        """Applied in place, the fault trips exactly its declared checks; reverted, the drill sees the healthy
        deployment again."""
        fault = {f.id: f for f in noo_faults.faults(noo_state)}[fault_id]
        env = dict(REFERENCES["nooterra-upstream"].environment)
        fault.apply(noo_state)
        try:
            seen = certify(
                noo_args, tmp_path / "fault", *(x for s in fault.sets for x in ("--set", s)), env=env
            )
        finally:
            fault.revert(noo_state)
        assert tripped(seen["statuses"], noo_healthy["statuses"]) == sorted(fault.trips), seen  # type: ignore[arg-type]
        after = certify(noo_args, tmp_path / "after", env=env)
        assert after["statuses"] == noo_healthy["statuses"]

    def test_secret_never_reaches_artifacts(self, noo_args: list[str], tmp_path: Path) -> None:
        """A secret supplied at run time that a failing take-away command prints (a DSN in an error, say) appears
        in no file the run writes: the step's output is recorded, scrubbed. (The command runs in the namespace with
        the run's environment, where it finds the secret.)"""
        canary = "canary-Hd4rq8Lw2Tz"
        shout = 'echo "password=$GATES_NOOTERRA_FINANCE_TOKEN" >&2; exit 1'
        seen = certify(
            noo_args, tmp_path, "--set", "health_drill.method=command", "--set", f"health_drill.stop={shout}",
            "--set", "health_drill.start=true", env={**dict(REFERENCES["nooterra-upstream"].environment),
                                                    "GATES_NOOTERRA_FINANCE_TOKEN": canary},
        )  # fmt: skip
        assert seen["statuses"] == {
            "health.dependency.noticed[api:postgres]": "error",
            "health.dependency.restored[postgres]": "error",
        }
        assert seen["code"] == 3
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert len(files) >= 4
        assert [str(p) for p in files if canary in p.read_text(errors="replace")] == []


# --- Oroboros ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oro_inst() -> Iterator[oro.Instance]:
    state = default_state_dir(f"selftest-health-drill-oroboros-{os.getpid()}")
    oro.down(state)
    oro.up(state)
    try:
        yield oro.Instance(state)
    finally:
        oro.down(state)
        assert not oro_netns.exists(oro.Instance(state).netns)


@pytest.fixture(scope="module")
def oro_args(oro_inst: oro.Instance) -> list[str]:
    return _without_gates(list(read_state(oro_inst.state)["args"]))


@pytest.fixture(scope="module")
def oro_healthy(oro_args: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("healthy")
    seen = certify(oro_args, out)
    check_timings(out, {"postgres", "api"})
    return seen


@pytest.mark.skipif(
    not oro_release.default_source().is_file() and os.environ.get("CI", "").lower() != "true",
    reason=f"no upstream snapshot at {oro_release.default_source()}",
)
class TestOroboros:
    """The real Oroboros: api and worker health are vacuous for PostgreSQL; the proxy route notices the api."""

    def test_verdicts_equal_the_table(self, oro_healthy: dict[str, object]) -> None:
        """The drill's verdict and every status are the table's (the vacuous answers with their file:line)."""
        verdict, statuses = expected("oroboros-upstream")
        assert (oro_healthy["verdict"], oro_healthy["statuses"]) == (verdict, statuses)
        assert oro_healthy["code"] == 1

    def test_faults_are_in_the_reference_catalogue(self) -> None:
        """`gates faults oroboros-upstream` lists the drill's faults (they trip checks no other fault does)."""
        assert set(oro_faults.FAULTS) <= set(REFERENCES["oroboros-upstream"].faults)

    @pytest.mark.parametrize("fault", oro_faults.FAULTS, ids=lambda f: f.id)
    def test_fault_trips_exactly_its_checks(
        self, fault: oro_faults.HealthFault, oro_inst: oro.Instance, oro_args: list[str], oro_healthy: dict[str, object],
        tmp_path: Path,
    ) -> None:  # fmt: skip
        """Applied in place, the fault trips exactly its declared checks; reverted, the drill sees the healthy
        deployment again."""
        fault.apply(oro_inst)
        try:
            seen = certify(oro_args, tmp_path / "fault", *(x for s in fault.sets for x in ("--set", s)))
        finally:
            fault.revert(oro_inst)
        assert tripped(seen["statuses"], oro_healthy["statuses"]) == sorted(fault.trips), seen  # type: ignore[arg-type]
        after = certify(oro_args, tmp_path / "after")
        assert after["statuses"] == oro_healthy["statuses"]
