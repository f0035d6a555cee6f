"""Faults on the real Nooterra: each made on the running upstream reference trips exactly its declared checks.

One instance of the ``nooterra-upstream`` reference is brought up and certified once (every gate of the
profile but the roll-up, with the paid call) for its baseline. Then each fault is applied in place, the gates
its declared checks belong to are certified (paid faults with the reference's spend, and only those gates:
no /ops probe runs beside the paid call), the checks that do not pass and did pass in the baseline must be
exactly the declared ones, and the fault is reverted. Last, the whole profile is certified again: after every
revert the reference is its baseline.

Each certification takes ~20 s, so CI certifies `SAMPLE` (one fault of every kind: process control, an env
edit with a restart, env drift, a bundle edit, a tampering proxy on each of the gateway's paths, a database
edit by hand behind the api's back and one that leaves /healthz green);
``GATES_UPSTREAM_FAULTS=all`` certifies the whole catalogue.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from fixtures.nooterra_upstream import deployment, faults, source
from fixtures.registry import REFERENCES
from gates.testing import not_passing

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REF = REFERENCES["nooterra-upstream"]
ROLL_UP = "production-readiness"
PROFILE_GATES = tuple(
    g
    for g in yaml.safe_load((PROJECT_ROOT / "conformance/profiles/nooterra.yaml").read_text())["gates"]
    if g != ROLL_UP
)
BUNDLE_GATES = ("serving-mode-boundary", "self-host-topology-bundle", "self-host-upgrade-migration")
PAID_GATES = ("paid-call-e2e", "receipt-verification")
SAMPLE = (
    "api-stopped",
    "gateway-bind-all",
    "env-file-missing",
    "bundle-gateway-key-not-fail-closed",
    "provider-signature-forged",
    "gateway-decision-id-swapped",
    "migration-row-deleted",
    "ingest-records-moved",
)
# The rate-limit burst errors as inconclusive when a loaded machine sends too slowly to empty the bucket (the
# verdict table's race "rate-limit-burst-timing"): that says nothing about a fault, so wherever the check is
# not declared, and in the baseline, that outcome is not counted.
INCONCLUSIVE = {"nooterra.rate_limit.enforced[api]": "error"}
# GATES_UPSTREAM_FAULTS: "all", or fault ids separated by commas (default: the sample)
_WANTED = os.environ.get("GATES_UPSTREAM_FAULTS", "")
CHOSEN = (
    faults.FAULTS
    if _WANTED == "all"
    else tuple(f for f in faults.FAULTS if f.id in (set(_WANTED.split(",")) if _WANTED else set(SAMPLE)))
)

pytestmark = pytest.mark.skipif(
    not source.default_source().is_file() and os.environ.get("CI", "").lower() != "true",
    reason=f"no upstream snapshot at {source.default_source()}",
)


def _requires() -> dict[str, set[str]]:
    """Gate -> the check ids it requires, for the profile's gates."""
    out: dict[str, set[str]] = {}
    for path in (PROJECT_ROOT / "gates" / "definitions").glob("*.yaml"):
        body = yaml.safe_load(path.read_text())
        if body.get("name") in PROFILE_GATES:
            out[body["name"]] = {
                r["check"] for r in body.get("requires", []) if isinstance(r, dict) and "check" in r
            }
    return out


def gates_for(trips: tuple[str, ...]) -> tuple[str, ...]:
    """The profile's gates requiring any of the checks ``trips`` names (in the profile's order); for a bundle
    edit every gate that reads the bundle, for the paid call both paid gates."""
    checks = {t.split("[", 1)[0] for t in trips}
    requires = _requires()
    for group in (BUNDLE_GATES, PAID_GATES):
        if any(checks & requires[g] for g in group):
            checks |= {c for g in group for c in requires[g]}
    return tuple(g for g in PROFILE_GATES if requires.get(g, set()) & checks)


@dataclass(frozen=True, slots=True)
class Instance:
    """The running reference: its state directory, its run arguments without gates, and its baseline (drills
    and the paid call included)."""

    state: Path
    args: tuple[str, ...]
    baseline: frozenset[str]  # check instances that do not pass on the healthy reference


def certify(
    args: tuple[str, ...], gates: tuple[str, ...], out: Path, *, paid: bool, drills: bool = False
) -> dict[str, str]:
    """Certify ``gates`` (each run with its own paid path: a new gate at the gateway); the non-passing checks."""
    argv = [sys.executable, "-m", "gates", "run", *args, *(x for g in gates for x in ("--gate", g)),
            "--set", f"paid.path=/exa/search?q=fault-{uuid.uuid4().hex[:12]}&numResults=1",
            "--out", str(out), "--quiet"]  # fmt: skip
    if paid:
        argv += ["--allow-spend-cents", str(REF.spend_cents)]
    if drills:
        argv += ["--allow-drills"]
    env = {**os.environ, **dict(REF.environment)}
    done = subprocess.run(argv, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    return not_passing(out)


def conclusive(seen: dict[str, str], declared: tuple[str, ...] = ()) -> dict[str, str]:
    """``seen`` without the inconclusive outcomes of checks not in ``declared``."""
    return {c: s for c, s in seen.items() if c in declared or INCONCLUSIVE.get(c) != s}


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    """The reference, up once; its baseline is every profile gate but the roll-up, the paid call included."""
    state = Path(tempfile.gettempdir()) / f"gates-{os.geteuid()}" / "reference" / f"upstream-f{os.getpid()}"
    args = deployment.up(state)
    gate_at = {i for i, a in enumerate(args) if a == "--gate"}
    plain = tuple(a for i, a in enumerate(args) if i not in gate_at and i - 1 not in gate_at)
    try:
        baseline = conclusive(
            certify(plain, PROFILE_GATES, tmp_path_factory.mktemp("baseline"), paid=True, drills=True)
        )
        yield Instance(state=state, args=plain, baseline=frozenset(baseline))
    finally:
        deployment.down(state)


def test_catalogue_is_registered_and_well_formed() -> None:
    """`gates faults nooterra-upstream` lists the catalogue; ids are unique, every trip names a check of the
    profile's gates, every sample id exists, and a paid fault is exactly one that trips a paid-call check."""
    assert REF.faults == faults.FAULTS
    ids = [f.id for f in faults.FAULTS]
    assert len(ids) == len(set(ids))
    assert set(SAMPLE) <= set(ids)
    known = set().union(*_requires().values())
    for fault in faults.FAULTS:
        assert fault.trips, fault.id
        assert fault.trips == tuple(sorted(set(fault.trips))), fault.id
        assert {t.split("[", 1)[0] for t in fault.trips} <= known, fault.id
        assert fault.paid == any(t.startswith("x402.") for t in fault.trips), fault.id
        assert fault.drill == any(t.startswith("upgrade.drill.") for t in fault.trips), fault.id


@pytest.mark.parametrize("fault", CHOSEN, ids=lambda f: f.id)
def test_fault_trips_exactly_its_checks(fault: faults.Fault, instance: Instance, tmp_path: Path) -> None:
    """Applied in place, the fault trips exactly its declared checks (beyond the baseline's non-passes)."""
    gates = gates_for(fault.trips)
    fault.apply(instance.state)
    try:
        seen = certify(instance.args, gates, tmp_path, paid=fault.paid, drills=fault.drill)
    finally:
        fault.revert(instance.state)
    tripped = {c: s for c, s in conclusive(seen, fault.trips).items() if c not in instance.baseline}
    # a declared check that already does not pass on the healthy reference (the verdict table says why) is
    # not the fault's to show
    assert sorted(tripped) == sorted(set(fault.trips) - instance.baseline), json.dumps(tripped, indent=1)


def test_reverted_reference_is_its_baseline(instance: Instance, tmp_path: Path) -> None:
    """After every fault was reverted (this runs last), the whole profile certifies as the baseline did."""
    after = conclusive(certify(instance.args, PROFILE_GATES, tmp_path, paid=True, drills=True))
    assert sorted(after) == sorted(instance.baseline), json.dumps(after, indent=1)
