"""The real upstream Oroboros, certified: verdicts against the committed table, operator faults, and upstream's own tools.

One deployment (``oroboros-upstream``) is brought up for the module. Every fault is applied and reverted
in place on it; after each, the suite and upstream's health scripts and smoke harness look at the same
deployment, and wherever upstream's tool fails, the suite must fail the same property.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from fixtures import netns
from fixtures.oroboros_upstream import deployment as dep
from fixtures.oroboros_upstream import faults, release
from fixtures.state import default_state_dir, read_state
from gates import report as reports
from gates.testing import not_passing

HERE = Path(__file__).resolve().parent
TABLE = yaml.safe_load((HERE / "oroboros_upstream_verdicts.yaml").read_text())
PROBES: dict[str, dict[str, list[str]]] = yaml.safe_load(
    (HERE / "oroboros_upstream_probe_map.yaml").read_text()
)
GATES_BIN = str(Path(sys.executable).with_name("gates"))
NON_PASS = ("fail", "error")

if not release.default_source().is_file() and os.environ.get("CI", "").lower() != "true":
    pytest.skip(f"upstream snapshot {release.default_source()} is absent", allow_module_level=True)


@dataclass(frozen=True, slots=True)
class Observation:
    """One look at the deployment: our statuses, and what each upstream tool said."""

    code: int
    statuses: dict[str, str]  # check instance -> status, every report but the roll-up
    verdicts: dict[str, str]  # gate -> verdict
    upstream: dict[str, tuple[int, str | None]]  # tool -> (exit code, the label of the probe it stopped at)


@pytest.fixture(scope="module")
def inst() -> Iterator[dep.Instance]:
    """The running reference."""
    state = default_state_dir("selftest-oroboros-upstream")
    dep.down(state)
    dep.up(state)
    try:
        yield dep.Instance(state)
    finally:
        dep.down(state)
        assert not netns.exists(dep.Instance(state).netns)


def _run_args(inst: dep.Instance, *, all_gates: bool) -> list[str]:
    args = list(read_state(inst.state)["args"])
    while all_gates and "--gate" in args:
        i = args.index("--gate")
        del args[i : i + 2]
    return args


def _tool(inst: dep.Instance, argv: list[str]) -> tuple[int, str | None]:
    """Run an upstream tool from the release root inside the namespace: exit code, label of the last probe begun."""
    done = netns.run(inst.netns, argv, cwd=str(inst.layout.current), env=inst.env(), timeout=120)
    labels = re.findall(r"^\[check\] (.+)$", done.stdout, flags=re.MULTILINE)
    return done.returncode, (labels[-1] if labels and done.returncode != 0 else None)


def observe(inst: dep.Instance, out: Path, *, all_gates: bool = False) -> Observation:
    """Certify the deployment (``--target netns://``) and run upstream's tools against it (inside its namespace)."""
    shutil.rmtree(out, ignore_errors=True)
    argv = [GATES_BIN, "run", *_run_args(inst, all_gates=all_gates)]
    done = subprocess.run([*argv, "--out", str(out), "--quiet"], capture_output=True, text=True, check=False)
    statuses, verdicts = {}, {}
    for path in sorted((out / "gates").glob("*.json")):
        body = reports.verify(path)
        verdicts[body["inputs"]["gate"]] = body["verdict"]["status"]
        statuses.update({c["id"]: c["status"] for c in body["checks"]})
    smoke = ["bash", "scripts/preview-smoke-e2e.sh", "--preview-url", "preview1.example.com", "--preview-url",
             "preview2.example.com", "--preview-url", "preview3.example.com", "--proxy-origin",
             "http://127.0.0.1:8088", "--output", str(out / "upstream-smoke.json")]  # fmt: skip
    upstream = {
        "scripts/runtime-health-check.sh": _tool(inst, ["bash", "scripts/runtime-health-check.sh"]),
        "scripts/preview-slots-health-check.sh": _tool(
            inst, ["bash", "scripts/preview-slots-health-check.sh"]
        ),
        "scripts/preview-smoke-e2e.sh": _tool(inst, smoke),
    }
    if upstream["scripts/preview-smoke-e2e.sh"][0] != 0:
        upstream["scripts/preview-smoke-e2e.sh"] = (upstream["scripts/preview-smoke-e2e.sh"][0], "harness")
    return Observation(code=done.returncode, statuses=statuses, verdicts=verdicts, upstream=upstream)


def _expected(entry: str | dict[str, str]) -> str:
    return entry if isinstance(entry, str) else entry["status"]


@pytest.fixture(scope="module")
def healthy(inst: dep.Instance, tmp_path_factory: pytest.TempPathFactory) -> Observation:
    """The healthy deployment, certified with every gate of the profile."""
    return observe(inst, tmp_path_factory.mktemp("healthy"), all_gates=True)


class TestHealthy:
    """The healthy real system: observed verdicts equal the committed table; upstream's tools pass."""

    def test_verdicts_equal_the_table(self, healthy: Observation) -> None:
        """Every gate verdict and every check instance's status is exactly the table's."""
        want_gates = {g: _expected(e["verdict"]) for g, e in TABLE["gates"].items()}
        want_checks = {
            c: _expected(s) for e in TABLE["gates"].values() for c, s in (e["checks"] or {}).items()
        }
        assert healthy.verdicts == want_gates
        assert healthy.statuses == want_checks
        assert healthy.code == 1  # runtime-topology fails (Caddy listens beyond loopback): see the table

    def test_every_non_pass_has_upstream_evidence(self) -> None:
        """Each expected non-pass names an upstream file:line that exists in the snapshot, and a reason."""
        tree = release.extract()
        entries = [e["verdict"] for e in TABLE["gates"].values()]
        entries += [s for e in TABLE["gates"].values() for s in (e["checks"] or {}).values()]
        for entry in (e for e in entries if not isinstance(e, str)):
            path, _, line = entry["upstream"].partition(":")
            assert entry["reason"].strip()
            assert len((tree / path).read_text().splitlines()) >= int(line), entry

    def test_upstream_tools_pass(self, healthy: Observation) -> None:
        """Upstream's health scripts and smoke harness pass the same deployment."""
        assert {tool: code for tool, (code, _) in healthy.upstream.items()} == dict.fromkeys(PROBES, 0)

    def test_every_upstream_probe_is_one_of_ours(self, inst: dep.Instance, healthy: Observation) -> None:
        """Every probe label upstream's scripts print is mapped, and each mapped check ran on the healthy system."""
        for tool in ("scripts/runtime-health-check.sh", "scripts/preview-slots-health-check.sh"):
            text = (inst.layout.current / tool).read_text()
            labels = set(re.findall(r'^check "([^"]+)"', text, flags=re.MULTILINE))
            assert labels
            assert labels <= set(PROBES[tool]) | set(PROBES["scripts/preview-slots-health-check.sh"])
        mapped = {c for probes in PROBES.values() for checks in probes.values() for c in checks}
        assert {c: healthy.statuses.get(c) for c in mapped} == dict.fromkeys(mapped, "pass")


def test_secret_canary_in_an_env_file_reaches_no_artifact(inst: dep.Instance, tmp_path: Path) -> None:
    """A password only api.env holds (the running api never loaded it) is compared by digest and written nowhere."""
    canary = "canary-Zq7xK2pW9m"
    file = inst.layout.env_dir / "api.env"
    saved = file.read_bytes()
    url = f"DATABASE_URL=postgresql+psycopg://postgres:{canary}@127.0.0.1:5432/builder_control"
    file.write_text(re.sub(r"(?m)^DATABASE_URL=.*$", url, file.read_text()))
    try:
        seen = observe(inst, tmp_path)
    finally:
        file.write_bytes(saved)
    assert seen.statuses["process.env.matches_file[api]"] == "fail"
    assert seen.statuses["config.env.values_exact[api]"] == "fail"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 5
    assert [str(p) for p in files if canary in p.read_text(errors="replace")] == []


@pytest.mark.parametrize("fault", faults.FAULTS, ids=lambda f: f.id)
def test_fault_trips_exactly_its_checks_and_upstream_agrees(
    fault: faults.Fault, inst: dep.Instance, healthy: Observation, tmp_path: Path
) -> None:
    """The fault trips exactly its declared instances; wherever an upstream tool fails, we fail that property."""
    fault.apply(inst)
    try:
        seen = observe(inst, tmp_path)
    finally:
        fault.revert(inst)
    baseline = {c for c, s in healthy.statuses.items() if s in NON_PASS}
    tripped = {c: s for c, s in not_passing(tmp_path).items() if s in NON_PASS and c not in baseline}
    assert sorted(tripped) == sorted(fault.trips), json.dumps(tripped, indent=1)
    for tool, (code, label) in seen.upstream.items():
        if code == 0:
            continue
        probes = {
            **PROBES[tool],
            **PROBES["scripts/preview-slots-health-check.sh"],
        }  # runtime-health-check.sh:14
        assert label in probes, (tool, code, label)
        ours = {c: seen.statuses.get(c) for c in probes[label]}
        assert all(s in NON_PASS for s in ours.values()), (tool, label, ours)
