"""Preview slots and the preview smoke/E2E harness contract.

A slot is a web surface whose ``/api`` proxies to its own api, which is bound to its own database;
cross-slot routing is forbidden. The harness prints one JSON line, writes a JSON artifact, and exits
0 when every check passed and 2 when any failed.
"""

from __future__ import annotations

import json
import posixpath
import re
from typing import Any
from urllib.parse import urlsplit

from conformance import _schemas
from conformance.checks import check, expect
from conformance.errors import Undetermined
from conformance.probes.datastores import PgConnect, PgSession
from conformance.probes.files import PathInfo, PathState
from conformance.probes.http import HttpGet, HttpResponse
from conformance.probes.process import HarnessRun, ListenerEnvironment, ProcessEnvironment, RunHarness
from conformance.probes.systemd import ListenerProcesses, ProcessInfo
from conformance.profile import Profile, Service, Slot, Smoke
from conformance.suite import _select

# --- slot health ------------------------------------------------------------------------------


def _health_get(svc: Service, host_header: str | None = None, via: Service | None = None) -> HttpGet:
    assert svc.health is not None
    where = via or svc
    return HttpGet(address=where.bind, port=where.port, path=svc.health.path, host_header=host_header)


def slot_health(profile: Profile, slot: Slot) -> dict[str, HttpGet]:
    """The slot's web health (direct and through the proxy with the preview host) and its api health."""
    web, api = profile.service(slot.web), profile.service(slot.api)
    out = {}
    if web.health is not None:
        out["web"] = _health_get(web)
        if profile.routes is not None:
            out["routed"] = _health_get(web, slot.host, profile.service(profile.routes.proxy))
    if api.health is not None:
        out["api"] = _health_get(api)
    return out


def _answer_ok(resp: HttpResponse, svc: Service) -> bool:
    h = svc.health
    assert h is not None
    return (
        resp.status == h.status
        and (h.body is None or resp.body == h.body.encode())
        and (h.content_type is None or resp.media_type == h.content_type.lower())
    )


@check(
    "slots.health.serving",
    title="The slot's web surface (direct and routed by its preview host) and its api answer health as declared",
    targets=_select.slots,
    observe=slot_health,
    remediation="Bring slot {name} up: its web unit, its api backend, and the proxy route for {host}.",
)
def test_slot_serving(target: Slot, obs: dict[str, HttpResponse], profile: Profile) -> None:
    """Every health answer of the slot is exactly the declared one."""
    owner = {"web": target.web, "routed": target.web, "api": target.api}
    got = {
        k: {"status": r.status, "body": r.body_preview(60), "contentType": r.media_type}
        for k, r in obs.items()
    }
    bad = sorted(k for k, r in obs.items() if not _answer_ok(r, profile.service(owner[k])))
    expect(not bad and bool(obs), f"slot {target.name}: unhealthy {', '.join(bad) or 'nothing declared'} "
           f"({'; '.join(f'{k}: {got[k]}' for k in bad)})",
           reason="slot_unhealthy", observed=got, expected=dict.fromkeys(owner, "declared health answer"))  # fmt: skip


# --- /api wiring ------------------------------------------------------------------------------


def slot_api_wiring(profile: Profile, slot: Slot) -> tuple[HttpGet, HttpGet, ListenerEnvironment]:
    """The api probe through the web surface, the same probe on the api directly, and the web process's target."""
    web, api = profile.service(slot.web), profile.service(slot.api)
    return (
        HttpGet(address=web.bind, port=web.port, path=slot.api_probe),
        HttpGet(address=api.bind, port=api.port, path=slot.api_probe),
        ListenerEnvironment(port=web.port, keys=(slot.proxy_target_key,)),
    )


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else url.strip().rstrip("/")


@check(
    "slots.api.proxied_to_own",
    title="The slot's web surface proxies /api to its own api, and to no other slot's",
    targets=_select.slots,
    observe=slot_api_wiring,
    remediation="Point {name}'s web surface at its own backend (its proxy target variable in the web env file), "
    "restart the web unit, and check that the backend answers.",
)
def test_slot_api_proxied(
    target: Slot, obs: tuple[HttpResponse, HttpResponse, ProcessEnvironment], profile: Profile
) -> None:
    """The running web process's proxy target is its own api, and /api answers exactly what that api answers."""
    proxied, direct, env = obs
    api = profile.service(target.api)
    want_target = f"http://{api.bind}:{api.port}"
    running_target = _origin(env.get(target.proxy_target_key))
    others = {
        f"http://{profile.service(s.api).bind}:{profile.service(s.api).port}": s.name
        for s in profile.slots
        if s.name != target.name
    }
    got = {
        "proxyTarget": running_target,
        "crossSlot": others.get(running_target or ""),
        "proxied": {"status": proxied.status, "body": proxied.body_preview(80)},
        "direct": {"status": direct.status, "body": direct.body_preview(80)},
    }
    want = {"proxyTarget": want_target, "proxied": "200, the same body the api answers directly"}
    expect(running_target == want_target,
           f"slot {target.name}: the web process proxies /api to {running_target or 'nothing'}"
           f"{' (slot ' + others[running_target] + ')' if running_target in others else ''}; expected {want_target}",
           reason="slot_cross_routed" if running_target in others else "slot_proxy_target_wrong",
           observed=got, expected=want)  # fmt: skip
    expect(proxied.status == 200 and proxied.status == direct.status and proxied.body == direct.body,
           f"slot {target.name}: GET {target.api_probe} through the web surface answered {proxied.status} "
           f"{proxied.body_preview(60)!r}; the api itself answered {direct.status} {direct.body_preview(60)!r}",
           reason="slot_api_unreachable", observed=got, expected=want)  # fmt: skip


# --- where the slot backend runs from ---------------------------------------------------------


def slot_api_process(profile: Profile, slot: Slot) -> tuple[ListenerProcesses, PathInfo]:
    """The processes on the slot api's port and the slot's worktree."""
    assert slot.worktree is not None
    return ListenerProcesses(port=profile.service(slot.api).port), PathInfo(path=slot.worktree)


@check(
    "slots.api.runs_worktree",
    title="The slot's api runs from the slot's own git worktree",
    targets=_select.slot_worktrees,
    observe=slot_api_process,
    remediation="Restart {name}'s backend from its worktree {worktree} (the preview backend runtime script's "
    "start --slot {name}), not from another slot's worktree or the release.",
)
def test_slot_api_runs_worktree(
    target: Slot, obs: tuple[tuple[ProcessInfo, ...], PathState], profile: Profile
) -> None:
    """Each process listening on the slot api's port has its working directory inside the slot's worktree."""
    procs, worktree = obs
    api = profile.service(target.api)
    if not procs:
        raise Undetermined(f"nothing listens on port {api.port}; see topology.listen.port_bound[{api.name}]")
    root = (worktree.resolved or "").rstrip("/")
    outside = sorted({p.cwd for p in procs if not root or not (p.cwd + "/").startswith(root + "/")})
    expect(bool(root), f"slot {target.name}: its worktree {target.worktree} does not exist",
           reason="slot_worktree_missing", observed=[p.cwd for p in procs], expected=target.worktree)  # fmt: skip
    expect(not outside, f"slot {target.name}: its api runs from {', '.join(outside)}, not from its worktree {root}",
           reason="slot_api_outside_worktree", observed=outside, expected=posixpath.join(root, "..."))  # fmt: skip


# --- database binding -------------------------------------------------------------------------


def slot_database(profile: Profile, slot: Slot) -> tuple[ListenerEnvironment, PgConnect | None]:
    """The api process's database variable, and a login to the slot's own database."""
    api = profile.service(slot.api)
    env = ListenerEnvironment(port=api.port, keys=(slot.database_key,))
    pg = next((s for s in profile.services if s.kind == "postgres"), None)
    if pg is None or pg.db_user is None:
        return env, None
    return env, PgConnect(
        address=pg.bind, port=pg.port, dbname=slot.database, user=pg.db_user, password=pg.password
    )


def _database_name(url: str | None) -> str | None:
    if not url:
        return None
    path = urlsplit(url).path
    return path.lstrip("/").split("?")[0] or None


@check(
    "slots.database.bound",
    title="The slot's api is bound to its own database, which exists",
    targets=_select.slots,
    observe=slot_database,
    remediation="Start {name}'s backend with its own database (e.g. DATABASE_URL=.../{name} database) "
    "and never another slot's or the control-plane database; create and migrate the slot database.",
)
def test_slot_database_bound(
    target: Slot, obs: tuple[ProcessEnvironment, PgSession | None], profile: Profile
) -> None:
    """The database named in the running api's environment is the slot's, and a login to it succeeds."""
    env, session = obs
    name = _database_name(env.get(target.database_key))
    owners = {s.database: s.name for s in profile.slots}
    got: dict[str, object] = {
        "database": name,
        "belongsTo": owners.get(name or ""),
        "loginToSlotDatabase": None if session is None else session.connected,
    }
    want = {
        "database": target.database,
        "belongsTo": target.name,
        "loginToSlotDatabase": session is not None or None,
    }
    expect(name == target.database,
           f"slot {target.name}: its api runs with {target.database_key} naming database {name!r}; expected "
           f"{target.database!r}",
           reason="slot_database_mismatch", observed=got, expected=want)  # fmt: skip
    expect(session is None or session.connected,
           f"slot {target.name}: cannot log in to {target.database}: {session.error if session else ''}",
           reason="slot_database_missing", observed=got, expected=want)  # fmt: skip


# --- the smoke/E2E harness --------------------------------------------------------------------


def _argv(smoke: Smoke, *extra: str) -> tuple[str, ...]:
    argv = [smoke.command]
    for url in smoke.preview_urls:
        argv += ["--preview-url", url]
    if smoke.proxy_origin:
        argv += ["--proxy-origin", smoke.proxy_origin]
    return (*argv, "--timeout-seconds", str(smoke.timeout_s), *extra)


def harness_passing(_: Profile, smoke: Smoke) -> RunHarness:
    """The harness against the preview URLs, core routes only."""
    return RunHarness(argv=_argv(smoke), timeout_s=smoke.timeout_s * 4 + 10)


def harness_failing(_: Profile, smoke: Smoke) -> RunHarness:
    """The harness with a changed route that does not exist."""
    return RunHarness(
        argv=_argv(smoke, "--changed-route", smoke.failing_route), timeout_s=smoke.timeout_s * 4 + 10
    )


_SUMMARY_KEYS = {"status", "artifact_uri", "failed_checks", "total_checks"}


def _contract(run: HarnessRun) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """Problems with the harness's stdout line and artifact, and both parsed."""
    problems: list[str] = []
    lines = [x for x in run.stdout.splitlines() if x.strip()]
    line: dict[str, Any] = {}
    if len(lines) != 1:
        problems.append(f"stdout has {len(lines)} lines, not one JSON line")
    try:
        parsed = json.loads(lines[-1]) if lines else None
        line = parsed if isinstance(parsed, dict) else {}
    except ValueError:
        problems.append("stdout is not JSON")
    if line and set(line) != _SUMMARY_KEYS:
        problems.append(f"stdout keys are {sorted(line)}, not {sorted(_SUMMARY_KEYS)}")
    artifact: dict[str, Any] = {}
    if run.artifact is None:
        problems.append("no artifact was written to --output")
    else:
        try:
            artifact = json.loads(run.artifact)
        except ValueError:
            problems.append("the artifact is not JSON")
        else:
            errors = _schemas.errors(artifact, "preview-smoke-artifact")
            problems += [f"artifact {e.json_path}: {e.message}" for e in errors[:5]]
    if line.get("artifact_uri") not in (f"file://{run.output_path}", None) or "artifact_uri" not in line:
        problems.append(f"artifact_uri {line.get('artifact_uri')!r} is not file://{run.output_path}")
    summary = artifact.get("summary") if isinstance(artifact.get("summary"), dict) else None
    if artifact and summary is not None:
        checks = [c for t in artifact.get("targets", []) for c in t.get("checks", [])]
        failed = sum(1 for c in checks if not c.get("passed"))
        consistent = (
            summary.get("total_checks") == len(checks) == line.get("total_checks")
            and summary.get("failed_checks") == failed == line.get("failed_checks")
            and summary.get("overall_status") == line.get("status") == ("passed" if failed == 0 else "failed")
        )
        if not consistent:
            problems.append("the stdout line, the artifact summary and the artifact's checks disagree")
    return problems, line, artifact


STDERR_TAIL = 1000  # characters of the harness's stderr a failing check's report keeps


def _observed(
    run: HarnessRun, line: dict[str, Any], problems: list[str], *, ok: bool = True
) -> dict[str, Any]:
    # the scratch path differs on every run; the report says whether it was right, not what it was
    shown = (
        {**line, "artifact_uri": "file://<--output>"}
        if line.get("artifact_uri") == f"file://{run.output_path}"
        else line
    )
    observed: dict[str, Any] = {
        "exitCode": run.exit_code,
        "stdout": shown or run.stdout[:300],
        "problems": problems,
    }
    if not ok:  # what the harness said on stderr, bounded; only when it failed, so passing reports hash alike
        observed["stderrTail"] = run.stderr[-STDERR_TAIL:].replace(run.output_path, "<--output>")
    return observed


@check(
    "smoke.harness.passes",
    title="The smoke/E2E harness passes against the previews through the proxy, keeping its output contract",
    targets=_select.smoke_harnesses,
    observe=harness_passing,
    remediation="Run {name} by hand against the preview URLs; fix the preview routes it reports, or the "
    "harness's JSON line, artifact shape or exit code.",
)
def test_harness_passes(target: Smoke, obs: HarnessRun) -> None:
    """Exit 0, one JSON line with status passed, and a schema-valid artifact that agrees with it."""
    problems, line, artifact = _contract(obs)
    failing = [
        f"{c.get('request_url')} ({c.get('error') or c.get('status_code')})"
        for t in artifact.get("targets", []) for c in t.get("checks", []) if not c.get("passed")
    ]  # fmt: skip
    expect(not problems, f"{target.name} breaks its output contract: {'; '.join(problems)}",
           reason="harness_contract_violated", observed=_observed(obs, line, problems, ok=not problems),
           expected={"exitCode": 0, "stdout": sorted(_SUMMARY_KEYS), "problems": []})  # fmt: skip
    passed = obs.exit_code == 0 and line.get("status") == "passed" and not failing
    expect(passed,
           f"{target.name} exited {obs.exit_code} with status {line.get('status')!r}; failing: "
           f"{', '.join(failing) or 'none'}",
           reason="harness_smoke_failed", observed=_observed(obs, line, problems, ok=passed),
           expected={"exitCode": 0, "status": "passed"})  # fmt: skip


@check(
    "smoke.harness.reports_failure",
    title="The smoke/E2E harness reports a missing route as failed, with exit code 2",
    targets=_select.smoke_harnesses,
    observe=harness_failing,
    remediation="{name} must exit 2 and print status failed when any check fails; a harness that passes "
    "regardless proves nothing.",
)
def test_harness_reports_failure(target: Smoke, obs: HarnessRun) -> None:
    """A route that does not exist fails on every preview URL (an HTTP error each): exit 2, status failed, counted."""
    problems, line, artifact = _contract(obs)
    missing = [
        c for t in artifact.get("targets", []) for c in t.get("checks", [])
        if c.get("route") == target.failing_route and not c.get("passed")
        and re.fullmatch(r"http_error:\d{3}", str(c.get("error")))
    ]  # fmt: skip
    ok = (
        not problems
        and obs.exit_code == 2
        and line.get("status") == "failed"
        and len(missing) == len(target.preview_urls)
        and int(line.get("failed_checks") or 0) >= len(missing)
    )
    expect(ok, f"{target.name} with a missing route {target.failing_route}: exit {obs.exit_code}, status "
               f"{line.get('status')!r}, {len(missing)}/{len(target.preview_urls)} failures recorded"
               f"{'; ' + '; '.join(problems) if problems else ''}",
           reason="harness_failure_not_reported", observed=_observed(obs, line, problems, ok=ok),
           expected={"exitCode": 2, "status": "failed", "failed_checks": len(target.preview_urls)})  # fmt: skip
