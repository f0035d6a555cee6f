"""The health-dependency drill: each declared health answer is proven able to fail.

One drill run (see `conformance.probes.healthdrill`) feeds every check here. For each dependency the profile's
``healthDrill`` declares, the drill takes it away, expects each dependent's health answer to stop being green
within its bound (``health.dependency.noticed``), puts it back and proves the deployment is as it found it
(``health.dependency.restored``). It has targets only where the profile declares the deployment disposable.
"""

from __future__ import annotations

from typing import Any

from conformance.checks import check, expect
from conformance.errors import Undetermined
from conformance.healthdeps import Dependency, Pair
from conformance.probes.healthdrill import (
    GREEN,
    Answer,
    DependencySpec,
    DependentSpec,
    HealthDependencyDrill,
    HealthDrillRecord,
)
from conformance.profile import Profile

APPLIES_WHEN = (
    "healthDrill.disposable (health_drill.disposable=true: the operator declares the deployment disposable)"
)


def pairs(profile: Profile) -> list[Pair]:
    """Every (dependent, dependency) pair of a disposable deployment's health drill."""
    d = profile.health_drill
    return d.pairs() if d is not None and d.disposable else []


def dependencies(profile: Profile) -> list[Dependency]:
    """Every dependency of a disposable deployment's health drill."""
    d = profile.health_drill
    return list(d.dependencies) if d is not None and d.disposable else []


def route_answer(name: str) -> str:
    """The drill's name of a route's health answer (through the proxy)."""
    return f"route {name}"


def drill(profile: Profile, _: object) -> HealthDependencyDrill:
    """The drill the profile's ``healthDrill`` describes: every health answer of the deployment is watched."""
    hd = profile.health_drill
    assert hd is not None
    answers = [
        Answer(name=s.name, address=s.bind, port=s.port, expect=s.health)
        for s in profile.services
        if s.kind == "http" and s.health is not None
    ]
    routed = {p.name for d in hd.dependencies for p in d.dependents if p.via_route}
    if routed:
        assert profile.routes is not None
        proxy = profile.service(profile.routes.proxy)
        for rt in profile.routes.hosts:
            upstream = profile.service(rt.upstream)
            if rt.name in routed and upstream.health is not None:
                answers.append(
                    Answer(name=route_answer(rt.name), address=proxy.bind, port=proxy.port,
                           expect=upstream.health, host_header=rt.host)
                )  # fmt: skip
    specs = tuple(
        DependencySpec(
            name=d.service,
            method=d.method,
            port=profile.service(d.service).port,
            unit=d.unit,
            stop=d.stop,
            start=d.start,
            dependents=tuple(
                DependentSpec(answer=route_answer(p.name) if p.via_route else p.name, bound_s=p.bound_s)
                for p in d.dependents
            ),
        )
        for d in hd.dependencies
    )
    return HealthDependencyDrill(
        answers=tuple(answers),
        dependencies=specs,
        listeners=tuple((s.name, s.port) for s in profile.services if s.listens),
        restore_s=hd.restore_s,
        interval_ms=hd.interval_ms,
        timeout_s=hd.timeout_s,
    )


def _taken_away(obs: HealthDrillRecord, dependency: str) -> dict[str, Any]:
    """The dependency's record, when it was taken away; otherwise the drill could not observe (error)."""
    rec = obs.dependency(dependency)
    if "refused" in rec:
        raise Undetermined(f"the drill left {dependency} alone: {rec['refused']}")
    step = rec["takeAway"]
    if step.get("exitCode") != 0:
        why = str(step.get("error") or step.get("stderrTail") or "").strip()[:200]
        raise Undetermined(
            f"taking {dependency} away failed ({step['command']}: exit {step.get('exitCode')}{', ' + why if why else ''})"
        )
    return rec


@check(
    "health.dependency.noticed",
    title="With a declared dependency taken away, the dependent's health answer stops being green within its bound",
    targets=pairs,
    observe=drill,
    remediation="The health answer is vacuous for this dependency: make the health handler check it (a query, a "
    "PING, a request) and answer non-green when it fails, so a deployment that cannot work does not look healthy.",
    drill=True,
    applies_when=APPLIES_WHEN,
)
def test_dependency_noticed(target: Pair, obs: HealthDrillRecord) -> None:
    """The dependent's answer was not green at least once within its bound while the dependency was away."""
    dep = target.dependency
    rec = _taken_away(obs, dep.service)
    answer = route_answer(target.dependent.name) if target.dependent.via_route else target.dependent.name
    seen = rec["noticed"][answer]
    expect(
        bool(seen["noticed"]),
        f"{answer} health stayed green for {target.dependent.bound_s}s while {dep.service} was away "
        f"({dep.method}): it is vacuous for {dep.service}",
        reason="health_vacuous",
        observed={"dependency": dep.service, "method": dep.method, "answer": seen["answer"]},
        expected={"dependency": dep.service, "answer": f"not green within {target.dependent.bound_s}s"},
    )


@check(
    "health.dependency.restored",
    title="After the dependency is put back, every health answer is green again and the deployment is as found",
    targets=dependencies,
    observe=drill,
    remediation="Compare the before/after snapshots in this report: put back what differs (start {name}, restart "
    "what exited with it) and make the put-back step of the declaration bring the deployment back whole.",
    drill=True,
    applies_when=APPLIES_WHEN,
)
def test_dependency_restored(target: Dependency, obs: HealthDrillRecord) -> None:
    """The put-back step exits 0, every answer is green within restoreSeconds, and the snapshots are equal."""
    rec = _taken_away(obs, target.service)
    put = rec["putBack"]
    not_green = {k: v for k, v in rec["greenAgain"].items() if v != GREEN}
    diffs = rec["differences"]
    ok = put.get("exitCode") == 0 and not not_green and not diffs
    expect(
        ok,
        f"after putting {target.service} back (exit {put.get('exitCode')}): "
        f"not green again: {not_green or 'none'}; {len(diffs)} difference(s) {list(diffs)[:4]}",
        reason="restore_failed" if put.get("exitCode") != 0 else "drill_left_changes",
        observed={k: rec[k] for k in ("putBack", "before", "after", "differences", "greenAgain")},
        expected={"putBack": "exit 0", "differences": [], "greenAgain": "every answer green"},
    )
