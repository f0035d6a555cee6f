"""Roll-up gates: definitions, the pure roll-up verdict, and how the report binds its components."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conformance.checks import CheckInstance
from conformance.errors import ConfigError
from conformance.profile import load_profile
from conformance.redact import Redactor
from gates import report as reports
from gates.evaluate import Component, evaluate, evaluate_rollup
from gates.gate import Expansion, Gate, Requirement, load_gate

CHECK = "health.http.status_exact"


def check_gate(name: str) -> Gate:
    return Gate(name=name, title=name, description="", report=f"{name}.json", source="<test>", sha256="0" * 64,
                requires=(Requirement(check=CHECK, targets=None, optional=False),))  # fmt: skip


def rollup(*names: str) -> Gate:
    return Gate(name="readiness", title="r", description="", report="readiness.json", source="<test>",
                sha256="1" * 64, requires=(), components=names)  # fmt: skip


def component(name: str, outcome: str | None) -> Component:
    """A component gate whose one check had ``outcome`` (None: it did not run)."""
    inst = CheckInstance(id=f"{CHECK}[{name}-svc]", check=CHECK, target=f"{name}-svc")
    results: dict[str, Any] = {} if outcome is None else {inst.id: {"outcome": outcome, "message": outcome}}
    ev = evaluate(check_gate(name), Expansion(instances=(inst,), unmatched=()), results)
    return Component(gate=name, report=f"{name}.json", evaluation=ev, artifact_hash="a" * 64)


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [
        (("pass", "pass"), "pass"),
        (("pass", "fail"), "fail"),
        (("pass", "error"), "incomplete"),
        (("fail", "error"), "fail"),
        (("pass", None), "incomplete"),
    ],
)
def test_rollup_verdict(outcomes: tuple[str | None, ...], status: str) -> None:
    """Fail beats incomplete beats pass, decided over the component verdicts."""
    comps = [component(f"g{i}", o) for i, o in enumerate(outcomes)]
    ev = evaluate_rollup(rollup(*(c.gate for c in comps)), comps)
    assert ev.status == status
    assert ev.verdict["totalChecks"] == len(comps)


def test_rollup_names_every_blocking_check_and_missing_components() -> None:
    """Each blocking check of each component is repeated; a component that did not run is blocking too."""
    comps = [component("health", "fail"), component("topology", "error")]
    ev = evaluate_rollup(rollup("health", "topology", "drill"), comps)
    ids = [b["id"] for b in ev.blocking]
    assert ids == [
        "readiness:drill",
        f"readiness:health:{CHECK}[health-svc]",
        f"readiness:topology:{CHECK}[topology-svc]",
    ]
    assert {b["checkId"] for b in ev.blocking} >= {f"{CHECK}[health-svc]", f"{CHECK}[topology-svc]"}
    drill = next(c for c in ev.checks if c["id"] == "gate.verdict.pass[drill]")
    assert drill["failureCode"] == "gate_not_run"
    assert ev.status == "fail"


def test_rollup_report_hash_binds_component_hashes(tmp_path: Path) -> None:
    """Changing a component's artifactHash changes the roll-up's artifactHash; the report validates."""
    profile = load_profile("oroboros", {})
    gate = rollup("health")
    comp = component("health", "pass")
    ev = evaluate_rollup(gate, [comp])
    made = []
    for digest in ("a" * 64, "b" * 64):
        body = reports.build(gate, profile, ev, target="local", captured_at=None, redactor=Redactor(frozenset()),
                             components=[{"gate": "health", "report": "health.json", "status": "pass",
                                          "artifactHash": digest}])  # fmt: skip
        reports.write(body, tmp_path / f"{digest[0]}.json")
        assert reports.verify(tmp_path / f"{digest[0]}.json")["verdict"]["status"] == "pass"
        made.append(body["artifactHash"])
    assert made[0] != made[1]


def test_builtin_readiness_lists_seven_components() -> None:
    """The oroboros production-readiness roll-up decides over the seven component gates."""
    gate = load_gate("production-readiness")
    assert gate.components == ("runtime-health", "runtime-topology", "maintenance-timers", "preview-slots",
                               "worker-guardrails", "deploy-rollback", "running-state")  # fmt: skip
    assert gate.requires == ()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("gates: [no-such-gate]\n", "unknown component gate 'no-such-gate'"),
        ("gates: []\n", "gates"),
        ("gates: [runtime-health]\nrequires: [{check: health.http.status_exact}]\n", "requires"),
    ],
)
def test_bad_rollup_definitions_exit_2(tmp_path: Path, body: str, needle: str) -> None:
    """Unknown components, an empty list, or mixing gates with requires are configuration errors naming the file."""
    path = tmp_path / "r.yaml"
    path.write_text(f"schemaVersion: gates.gate/v1\nname: r\nreport: r.json\n{body}")
    with pytest.raises(ConfigError) as info:
        load_gate(str(path))
    assert str(path) in info.value.render()
    assert needle in info.value.render()


def test_components_can_be_required_in_some_serving_modes_only(tmp_path: Path) -> None:
    """A component listed with servingModes is required only of deployments declaring one of them."""
    path = tmp_path / "r.yaml"
    path.write_text(
        "schemaVersion: gates.gate/v1\nname: r\nreport: r.json\n"
        "gates: [runtime-health, {gate: runtime-topology, servingModes: [self-host]}]\n"
    )
    gate = load_gate(str(path))
    assert gate.applicable("self-host") == ("runtime-health", "runtime-topology")
    assert gate.applicable("hosted") == ("runtime-health",)
    assert gate.applicable(None) == ("runtime-health",)
    ev = evaluate_rollup(gate, [component("runtime-health", "pass")], gate.applicable("hosted"))
    assert ev.status == "pass"
    assert evaluate_rollup(
        gate, [component("runtime-health", "pass")], gate.applicable("self-host")
    ).status == ("incomplete")


def test_a_profile_may_ship_its_own_definition_of_a_gate_name() -> None:
    """`gates/definitions/<profile>/<name>.yaml` wins over the shared definition for that profile only."""
    shared = load_gate("production-readiness")
    own = load_gate("production-readiness", profile="nooterra")
    assert own.source == "builtin:nooterra/production-readiness"
    assert shared.source == "builtin:production-readiness"
    assert set(own.components) != set(shared.components)
    assert load_gate("production-readiness", profile="oroboros").source == "builtin:production-readiness"


def _written(tmp_path: Path, name: str, outcome: str, profile_name: str = "oroboros") -> Path:
    profile = load_profile(profile_name, {"serving_mode": "self-host"} if profile_name == "nooterra" else {})
    comp = component(name, outcome)
    body = reports.build(check_gate(name), profile, comp.evaluation, target="local", captured_at=None,
                         redactor=Redactor(frozenset()))  # fmt: skip
    path = tmp_path / f"{name}-{outcome}.json"
    reports.write(body, path)
    return path


def test_supplied_reports_count_only_where_this_run_could_not_decide(tmp_path: Path) -> None:
    """A verified passing report stands in for a component that did not run or is incomplete, never for a failure."""
    from gates.certify import _better, _supplied

    profile = load_profile("oroboros", {})
    supplied = _supplied([_written(tmp_path, "paid", "pass")], profile)["paid"]
    assert supplied.supplied is not None
    assert _better(None, supplied) is supplied
    assert _better(component("paid", "error"), supplied) is supplied
    failed = component("paid", "fail")
    assert _better(failed, supplied) is failed
    passed = component("paid", "pass")
    assert _better(passed, supplied) is passed
    ev = evaluate_rollup(rollup("paid"), [supplied])
    assert ev.status == "pass"
    assert ev.checks[0]["detail"]["observed"]["supplied"] == supplied.supplied


def test_supplied_reports_must_verify_and_match_the_profile(tmp_path: Path) -> None:
    """A tampered report, or one of another profile, is a usage error naming the file."""
    from gates.certify import _supplied

    profile = load_profile("oroboros", {})
    other = _written(tmp_path, "paid", "pass", profile_name="nooterra")
    with pytest.raises(ConfigError, match="certifies profile 'nooterra'"):
        _supplied([other], profile)
    tampered = _written(tmp_path, "live", "pass")
    tampered.write_text(tampered.read_text().replace('"passedChecks": 1', '"passedChecks": 2'))
    with pytest.raises(ConfigError, match="artifactHash does not match"):
        _supplied([tampered], profile)
