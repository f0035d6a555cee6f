"""Worker guardrails: a dedicated identity, restricted writable paths, and the command and environment allowlists."""

from __future__ import annotations

import fnmatch

from conformance.checks import check, expect
from conformance.envfile import parse_env
from conformance.errors import Undetermined
from conformance.probes.files import FileContent, ReadFile
from conformance.probes.systemd import PasswdEntry, ReadPasswd, ShowUnit, UnitInfo
from conformance.profile import Guardrail, Profile
from conformance.suite import _select


def unit_and_passwd(profile: Profile, g: Guardrail) -> tuple[ShowUnit, ReadPasswd]:
    """The guarded service's unit and the passwd entry of its declared user."""
    svc = profile.service(g.service)
    assert svc.unit is not None
    assert svc.user is not None
    return ShowUnit(unit=svc.unit), ReadPasswd(user=svc.user)


@check(
    "guardrails.identity.dedicated",
    title="The guarded service runs as its own user, shared with no other service, with no login shell",
    targets=_select.guardrails,
    needs_systemd=True,
    observe=unit_and_passwd,
    remediation="Run {name} as its dedicated system user (User= in its unit), give that user a nologin shell, "
    "and run no other service as it.",
)
def test_identity_dedicated(target: Guardrail, obs: tuple[UnitInfo, PasswdEntry], profile: Profile) -> None:
    """The unit's user is the declared one, no other declared service uses it, and it cannot log in."""
    unit, entry = obs
    svc = profile.service(target.service)
    sharing = sorted(s.name for s in profile.services if s.user == svc.user and s.name != svc.name)
    got = {"user": unit.get("User") or "root", "sharedWith": sharing, "shell": entry.shell}
    want: dict[str, object] = {"user": svc.user, "sharedWith": [], "shell": "nologin"}
    ok = (
        got["user"] == svc.user
        and not sharing
        and entry.exists
        and entry.shell.endswith(("nologin", "false"))
    )
    expect(ok, f"{target.service} runs as {got['user']!r} (shared with {sharing or 'no one'}, shell {entry.shell!r})",
           reason="guardrail_identity_not_dedicated", observed=got, expected=want)  # fmt: skip


def show_guarded(profile: Profile, g: Guardrail) -> ShowUnit:
    """The guarded service's unit."""
    unit = profile.service(g.service).unit
    assert unit is not None
    return ShowUnit(unit=unit)


@check(
    "guardrails.filesystem.writable_paths",
    title="The guarded service can write only to its declared paths",
    targets=_select.guardrails,
    needs_systemd=True,
    observe=show_guarded,
    remediation="Set ReadWritePaths= of {name}'s unit to exactly the declared paths, with ProtectSystem=full "
    "or stricter and ProtectHome=yes.",
)
def test_writable_paths(target: Guardrail, obs: UnitInfo) -> None:
    """ReadWritePaths equals the declared set and the rest of the system is protected."""
    paths = sorted(obs.get("ReadWritePaths").split())
    got = {
        "readWritePaths": paths,
        "protectSystem": obs.get("ProtectSystem"),
        "protectHome": obs.get("ProtectHome"),
    }
    want = {"readWritePaths": sorted(target.writable_paths), "protectSystem": ["full", "strict"],
            "protectHome": ["yes", "read-only", "tmpfs"]}  # fmt: skip
    ok = (
        paths == want["readWritePaths"]
        and got["protectSystem"] in want["protectSystem"]
        and got["protectHome"] in want["protectHome"]
    )
    expect(ok, f"{target.service} may write {paths} (ProtectSystem={got['protectSystem']}, ProtectHome={got['protectHome']})",
           reason="guardrail_writable_paths_widened", observed=got, expected=want)  # fmt: skip


def guarded_env(profile: Profile, g: Guardrail) -> ReadFile:
    """The guarded service's environment file."""
    svc = profile.service(g.service)
    env = next(e for e in profile.env_files if e.name == svc.env_file)
    return ReadFile(path=env.path)


def _env(obs: FileContent) -> dict[str, str]:
    if not obs.readable or obs.text is None:
        raise Undetermined(f"{obs.path} cannot be read ({obs.error})")
    return parse_env(obs.text).effective()


@check(
    "guardrails.commands.allowlist",
    title="The command allowlist admits no shell and no catch-all pattern",
    targets=_select.guardrail_envs,
    observe=guarded_env,
    remediation="Remove shells and catch-all patterns from the command allowlist in {name}'s env file.",
)
def test_command_allowlist(target: Guardrail, obs: FileContent) -> None:
    """Every allowlisted command pattern is specific and none matches a shell."""
    env = _env(obs)
    raw = env.get(target.commands_key)
    if raw is None:
        raise Undetermined(f"{target.commands_key} is not set in {obs.path}")
    patterns = [p.strip() for p in raw.split(",") if p.strip()]
    bad = sorted({p for p in patterns for shell in target.forbidden_commands if fnmatch.fnmatch(shell, p)}
                 | {p for p in patterns if p in ("*", "*?", "?*")})  # fmt: skip
    expect(not bad, f"{target.commands_key} admits {bad}", reason="guardrail_allowlist_admits_shell",
           observed=bad, expected=[])  # fmt: skip


@check(
    "guardrails.environment.blocklist",
    title="Credentials never reach the guarded service's subprocesses",
    targets=_select.guardrail_envs,
    observe=guarded_env,
    remediation="Add the missing credential keys to the subprocess environment blocklist in {name}'s env file, "
    "and remove them from its allowlist.",
)
def test_environment_blocklist(target: Guardrail, obs: FileContent) -> None:
    """Every declared credential key is blocked and none is inherited through the allowlist."""
    env = _env(obs)
    blocked = {k.strip() for k in env.get(target.blocklist_key, "").split(",") if k.strip()}
    allowed = {k.strip() for k in env.get(target.allowlist_key, "").split(",") if k.strip()}
    missing = sorted(set(target.must_block) - blocked)
    leaked = sorted(set(target.must_block) & allowed)
    expect(not missing and not leaked, f"credentials not blocked: {missing}; inherited through the allowlist: {leaked}",
           reason="guardrail_credentials_reach_subprocesses", observed={"notBlocked": missing, "allowlisted": leaked},
           expected={"notBlocked": [], "allowlisted": []})  # fmt: skip
