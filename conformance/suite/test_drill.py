"""The deploy/rollback drill: the target's own deploy and rollback commands, exercised and watched.

One drill run (see `conformance.probes.drill`) feeds every check here. The registry statuses are
those of the documented deploy flow: deploying, deployed, deploy_failed, replaced,
rollback_in_progress, rolled_back, rollback_failed, replaced_by_rollback.
"""

from __future__ import annotations

import re
from typing import Any

from conformance.checks import check, expect
from conformance.errors import Undetermined
from conformance.probes.drill import DeployRollbackDrill, DrillRecord, HealthTarget
from conformance.profile import Profile, Release
from conformance.suite import _select


def drill(profile: Profile, release: Release) -> DeployRollbackDrill:
    """The drill the profile's ``release.drill`` describes."""
    d = release.drill
    assert d is not None
    registry = profile.service(d.registry_service)
    health = tuple(
        HealthTarget(
            name=s.name,
            address=s.bind,
            port=s.port,
            path=s.health.path,
            status=s.health.status,
            body=s.health.body,
        )
        for s in profile.services
        if s.kind == "http" and s.health is not None
    )
    return DeployRollbackDrill(
        current=release.current,
        releases=release.releases,
        deploy=d.deploy,
        rollback=d.rollback,
        candidate=d.candidate,
        broken=d.broken,
        marker=d.complete_marker,
        units=d.units if profile.process_manager == "systemd" else (),
        timeout_s=d.timeout_s,
        registry_address=registry.bind,
        registry_port=registry.port,
        registry_db=registry.database or "",
        registry_user=registry.db_user or "",
        registry_password=registry.password,
        registry_table=d.registry_table,
        health=health,
    )


def _release_path(release: Release, name: str) -> str:
    return f"{release.releases.rstrip('/')}/{name}"


def _unhealthy(step: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in step["health"].items() if v != "ok"}


_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)?")


def _summary(step: dict[str, Any], *, ok: bool) -> dict[str, Any]:
    """What a report shows of a step. No durations; the stderr tail (retry noise, timings) only when it failed,
    with timestamps masked, so the same outcome hashes the same."""
    shown = {k: step[k] for k in ("command", "exitCode", "current", "registry", "health")}
    if not ok:
        shown["stderrTail"] = _TIMESTAMP.sub("<time>", step["stderrTail"][-600:])
    return shown


def _sequence(watch: dict[str, Any]) -> list[str]:
    """The distinct states ``current`` went through, in order (sample counts vary from run to run)."""
    return [f"{r['state']} {r['target']}" for r in watch["runs"]]


def _expect_step(
    step: dict[str, Any], *, succeeds: bool, current: str, rows: dict[str, str], reason: str
) -> None:
    """One drill step ended as it must: exit status, where current points, registry rows, every service healthy."""
    got_rows = {k: step["registry"].get(k) for k in rows}
    exit_ok = (step["exitCode"] == 0) == succeeds
    ok = exit_ok and step["current"] == current and got_rows == rows and not _unhealthy(step)
    expect(ok, f"{step['command']}: exit {step['exitCode']}, current -> {step['current']}, registry {got_rows}, "
               f"unhealthy: {_unhealthy(step) or 'none'}",
           reason=reason, observed=_summary(step, ok=ok),
           expected={"exitCode": 0 if succeeds else "non-zero", "current": current, "registry": rows,
                     "health": "all ok"})  # fmt: skip


@check(
    "release.deploy.atomic_switch",
    title="Deploy and rollback switch the release symlink atomically: it never dangles or shows a partial release",
    targets=_select.drills,
    observe=drill,
    remediation="Switch {name} by renaming a fresh symlink over it (ln -s RELEASE {name}.next && mv -T ...), and "
    "build each release in a temporary directory renamed into place only when complete.",
    drill=True,
)
def test_atomic_switch(target: Release, obs: DrillRecord) -> None:
    """Every sample the watcher took during every step resolved to a complete release directory."""
    seen = {s["step"]: s["watch"] for s in obs.steps}
    prefix = target.releases.rstrip("/") + "/"
    bad = {
        step: [
            f"{r['state']} {r['target']}"
            for r in w["runs"]
            if r["state"] != "ok" or not r["target"].startswith(prefix)
        ]
        for step, w in seen.items()
    }
    bad = {k: v for k, v in bad.items() if v}
    if not bad and len({r["target"] for w in seen.values() for r in w["runs"]}) < 2:
        raise Undetermined(
            f"{target.current} never moved from {obs.before['current']} while the drill watched: no switch "
            "happened, so its atomicity was not observed; see release.deploy.health_gated"
        )
    watched = all(w["samples"] > 0 for w in seen.values())
    expect(len(seen) == 3 and watched and not bad,
           f"while the drill watched, {target.current} was dangling or incomplete: {bad}"
           if bad else f"the drill watched {len(seen)} of 3 steps (every step needs samples)",
           reason="release_switch_not_atomic", observed={step: _sequence(w) for step, w in seen.items()},
           expected="every sample: a complete release under the releases directory")  # fmt: skip


@check(
    "release.deploy.health_gated",
    title="Deploying a good release succeeds through the health gate and switches current to it",
    targets=_select.drills,
    observe=drill,
    remediation="Make the deploy command build the release, switch {name}, restart the services and pass "
    "its health gate; see the step's stderr in the report.",
    drill=True,
)
def test_deploy_health_gated(target: Release, obs: DrillRecord) -> None:
    """Exit 0, current points at the candidate, and every service answers health afterwards."""
    assert target.drill is not None
    _expect_step(obs.step("deploy_candidate"), succeeds=True, current=_release_path(target, target.drill.candidate),
                 rows={}, reason="deploy_failed")  # fmt: skip


@check(
    "release.deploy.recorded",
    title="The release registry records the deploy: the new release deployed, the previous one replaced",
    targets=_select.drills,
    observe=drill,
    remediation="Have the deploy command upsert the release registry: new release deployed, previous replaced.",
    drill=True,
)
def test_deploy_recorded(target: Release, obs: DrillRecord) -> None:
    """After the good deploy the registry rows say deployed (candidate) and replaced (previous)."""
    assert target.drill is not None
    step = obs.step("deploy_candidate")
    if step["current"] != _release_path(target, target.drill.candidate):
        # the deploy never went through (it was rolled back or never switched): there is no deploy to be recorded
        raise Undetermined(
            f"deploying {target.drill.candidate} did not leave it current (exit {step['exitCode']}; see "
            "release.deploy.health_gated), so how the registry records a deploy was not observed"
        )
    original = obs.before["current"].rsplit("/", 1)[-1]
    want = {target.drill.candidate: "deployed", original: "replaced"}
    got = {k: step["registry"].get(k) for k in want}
    expect(got == want, f"after deploying {target.drill.candidate} the registry says {got}; expected {want}",
           reason="deploy_not_recorded", observed=got, expected=want)  # fmt: skip


@check(
    "release.deploy.auto_rollback",
    title="Deploying a release that fails the health gate is rolled back automatically and recorded",
    targets=_select.drills,
    observe=drill,
    remediation="When the health gate fails, the deploy command must switch {name} back to the previous release, "
    "restart the services, record the failed release as deploy_failed, and exit non-zero.",
    drill=True,
)
def test_auto_rollback(target: Release, obs: DrillRecord) -> None:
    """Non-zero exit, current back on the release it replaced (the candidate, when that deploy went through),
    registry broken=deploy_failed and that release deployed, healthy."""
    assert target.drill is not None
    d = target.drill
    previous = obs.step("deploy_candidate")["current"]
    _expect_step(obs.step("deploy_broken"), succeeds=False, current=previous,
                 rows={d.broken: "deploy_failed", previous.rsplit("/", 1)[-1]: "deployed"},
                 reason="auto_rollback_failed")  # fmt: skip


@check(
    "release.rollback.named",
    title="The rollback command restores a named earlier release and records it",
    targets=_select.drills,
    observe=drill,
    remediation="Make the rollback command switch {name} to the named release, restart, pass the health gate and "
    "record it as rolled_back (the release it replaced as replaced_by_rollback).",
    drill=True,
)
def test_rollback_named(target: Release, obs: DrillRecord) -> None:
    """Exit 0, current on the named release, registry rolled_back / replaced_by_rollback (the release current
    pointed at before the step, when that is another one), healthy."""
    assert target.drill is not None
    original = obs.before["current"].rsplit("/", 1)[-1]
    replaced = obs.step("deploy_broken")["current"].rsplit("/", 1)[-1]
    rows = {original: "rolled_back"} | ({replaced: "replaced_by_rollback"} if replaced != original else {})
    _expect_step(obs.step("rollback_named"), succeeds=True, current=obs.before["current"], rows=rows,
                 reason="rollback_failed")  # fmt: skip


@check(
    "release.drill.restored",
    title="The drill leaves the target as found: same current, releases, unit states and registry rows",
    targets=_select.drills,
    observe=drill,
    remediation="Compare the before/after snapshots in this report and put back what differs.",
    drill=True,
)
def test_restored(target: Release, obs: DrillRecord) -> None:
    """The after snapshot equals the before snapshot, and the services answer health."""
    unhealthy = {k: v for k, v in obs.after.get("healthy", {}).items() if v != "ok"}
    comparison = {
        "before": obs.before,
        "after": obs.after,
        "differences": list(obs.differences),
        "restoreActions": obs.restore.get("actions", []),
    }
    expect(not obs.differences and not unhealthy,
           f"after the drill: {len(obs.differences)} difference(s) {list(obs.differences)[:4]}, "
           f"unhealthy: {unhealthy or 'none'}",
           reason="drill_left_changes", observed=comparison,
           expected={"differences": [], "healthy": "all ok"})  # fmt: skip
