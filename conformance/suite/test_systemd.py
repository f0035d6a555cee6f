"""Process management: declared units exist, are enabled and active, run as declared, and own their ports."""

from __future__ import annotations

import posixpath

from conformance.checks import check, expect
from conformance.errors import Undetermined
from conformance.probes.files import PathInfo, PathState
from conformance.probes.systemd import (
    ContainerRuntimes,
    FindContainerRuntimes,
    ListenerProcesses,
    ProcessInfo,
    ShowUnit,
    UnitInfo,
    VerifyResult,
    VerifyUnit,
)
from conformance.profile import Profile, Service
from conformance.suite import _select
from conformance.suite._select import HostTarget
from conformance.suite._units import expect_loaded, expect_state

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def show_unit(_: Profile, svc: Service) -> ShowUnit:
    """``systemctl show`` of the service's unit."""
    assert svc.unit is not None
    return ShowUnit(unit=svc.unit)


@check(
    "systemd.unit.active",
    title="The service's unit exists and is active",
    targets=_select.units,
    needs_systemd=True,
    observe=show_unit,
    remediation="Start {unit} (systemctl start {unit}) and read why it stopped: journalctl -u {unit}.",
)
def test_unit_active(target: Service, obs: UnitInfo) -> None:
    """The unit is loaded and its ActiveState is active."""
    expect_state(obs, "ActiveState", "active", kind="unit", reason="unit_not_active")


@check(
    "systemd.unit.enabled",
    title="The service's unit is enabled (starts at boot)",
    targets=_select.units,
    needs_systemd=True,
    observe=show_unit,
    remediation="Enable {unit} (systemctl enable {unit}) so it comes back after a reboot.",
)
def test_unit_enabled(target: Service, obs: UnitInfo) -> None:
    """The unit's file state is enabled."""
    expect_state(obs, "UnitFileState", "enabled", kind="unit", reason="unit_not_enabled")


@check(
    "systemd.unit.identity",
    title="The unit runs as the declared user and group",
    targets=_select.unit_identities,
    needs_systemd=True,
    observe=show_unit,
    remediation="Set User={user} (and the declared Group=) in {unit}, then daemon-reload and restart it.",
)
def test_unit_identity(target: Service, obs: UnitInfo) -> None:
    """The unit's User= and Group= equal the declared ones."""
    expect_loaded(obs, kind="unit")
    got = {"user": obs.get("User") or "root", "group": obs.get("Group") or "(primary group)"}
    want = {"user": target.user, "group": target.group or got["group"]}
    expect(got == want, f"unit {target.unit} runs as {got['user']}:{got['group']}; expected {want['user']}:{want['group']}",
           reason="unit_identity_mismatch", observed=got, expected=want)  # fmt: skip


def _normal(name: str, value: str) -> str:
    text = value.strip()
    if text.lower() in _TRUE:
        return "yes"
    if text.lower() in _FALSE:
        return "no"
    if name == "RestrictAddressFamilies":
        return " ".join(sorted(text.split()))
    if name == "UMask":
        return text.rjust(4, "0")
    return text


@check(
    "systemd.unit.hardening",
    title="The unit carries the declared sandboxing set",
    targets=_select.hardened_units,
    needs_systemd=True,
    observe=show_unit,
    remediation="Restore the missing sandboxing settings in {unit} (see its declared hardening set), then "
    "daemon-reload and restart it.",
)
def test_unit_hardening(target: Service, obs: UnitInfo) -> None:
    """Every declared sandboxing setting has the declared effective value."""
    expect_loaded(obs, kind="unit")
    wrong = {k: obs.get(k) for k, v in target.hardening if _normal(k, obs.get(k)) != _normal(k, v)}
    expect(not wrong, f"unit {target.unit} differs in {', '.join(f'{k}={v!r}' for k, v in wrong.items())}",
           reason="unit_hardening_missing", observed=wrong,
           expected={k: v for k, v in target.hardening if k in wrong})  # fmt: skip


def unit_and_env(profile: Profile, svc: Service) -> ShowUnit:
    """The unit; the declared env file's path comes from the profile."""
    return show_unit(profile, svc)


@check(
    "systemd.unit.environment_file",
    title="The unit reads the declared environment file",
    targets=_select.units_with_env_file,
    needs_systemd=True,
    observe=unit_and_env,
    remediation="Point EnvironmentFile= of {unit} at the declared file, then daemon-reload and restart it.",
)
def test_unit_environment_file(target: Service, obs: UnitInfo, profile: Profile) -> None:
    """The declared env file is among the unit's EnvironmentFile= entries."""
    expect_loaded(obs, kind="unit")
    want = next(e.path for e in profile.env_files if e.name == target.env_file)
    got = obs.environment_files()
    expect(want in got, f"unit {target.unit} reads {got or 'no env file'}; expected {want}",
           reason="unit_env_file_mismatch", observed=got, expected=[want])  # fmt: skip


def unit_and_listeners(_: Profile, svc: Service) -> tuple[ShowUnit, ListenerProcesses]:
    """The unit and the processes on the service's port."""
    assert svc.unit is not None
    return ShowUnit(unit=svc.unit), ListenerProcesses(port=svc.port)


@check(
    "topology.listen.owned_by_unit",
    title="The process on the port belongs to the declared unit and runs as the declared user",
    targets=_select.unit_identities,
    needs_systemd=True,
    observe=unit_and_listeners,
    remediation="Stop whatever holds port {port} outside {unit} and start the service through {unit}.",
)
def test_listener_owned_by_unit(target: Service, obs: tuple[UnitInfo, tuple[ProcessInfo, ...]]) -> None:
    """Every process listening on the port is in the unit's cgroup and runs as the declared user."""
    unit, procs = obs
    if not procs:
        raise Undetermined(
            f"nothing listens on port {target.port}; see topology.listen.port_bound[{target.name}]"
        )
    cgroup = unit.get("ControlGroup")
    strays = [
        {"pid": p.pid, "user": p.user, "cgroup": p.cgroup}
        for p in procs
        if not cgroup
        or not (p.cgroup == cgroup or p.cgroup.startswith(cgroup + "/"))
        or p.user != target.user
    ]
    expect(not strays, f"port {target.port} is held by {strays} outside unit {target.unit} (cgroup {cgroup!r}) "
           f"or not as {target.user}", reason="listener_not_owned_by_unit", observed=strays,
           expected={"cgroup": cgroup, "user": target.user})  # fmt: skip


def listeners(_: Profile, svc: Service) -> ListenerProcesses:
    """The processes holding the service's port."""
    return ListenerProcesses(port=svc.port)


@check(
    "topology.listen.runs_as",
    title="The process listening on the service's port runs as the declared user",
    targets=_select.listener_users,
    observe=listeners,
    remediation="Run {name} as its declared user (the profile's user for it) instead of the user shown, e.g. "
    "with runuser/setpriv or a service manager's User=, then restart it.",
)
def test_listener_runs_as(target: Service, obs: tuple[ProcessInfo, ...]) -> None:
    """Every process holding the port runs as the declared user (read from /proc, no service manager needed)."""
    if not obs:
        raise Undetermined(
            f"nothing listens on port {target.port}; see topology.listen.port_bound[{target.name}]"
        )
    users = sorted({p.user for p in obs})
    expect(users == [target.user], f"port {target.port} is held by processes running as {', '.join(users)}; "
           f"{target.name} must run as {target.user}", reason="listener_user_mismatch",
           observed={"users": users, "pids": len(obs)}, expected={"users": [target.user]})  # fmt: skip


def listeners_and_current(profile: Profile, svc: Service) -> tuple[ListenerProcesses, PathInfo]:
    """The processes on the service's port and the runtime symlink."""
    assert profile.release is not None
    return ListenerProcesses(port=svc.port), PathInfo(path=profile.release.current)


@check(
    "release.process.runs_current",
    title="The service runs the code of the release the runtime symlink points at",
    targets=_select.release_runners,
    observe=listeners_and_current,
    remediation="Restart {name} so it picks up the release the runtime symlink points at.",
)
def test_runs_current_release(target: Service, obs: tuple[tuple[ProcessInfo, ...], PathState]) -> None:
    """Each listening process's working directory lies inside the resolved current release."""
    procs, current = obs
    if not procs:
        raise Undetermined(
            f"nothing listens on port {target.port}; see topology.listen.port_bound[{target.name}]"
        )
    if not current.resolved:
        raise Undetermined("the runtime symlink does not resolve; see release.current.target_exists")
    release = current.resolved.rstrip("/") + "/"
    stale = sorted({p.cwd for p in procs if not (p.cwd + "/").startswith(release)})
    expect(not stale, f"{target.name} runs from {', '.join(stale)}, not from the current release {current.resolved}",
           reason="process_runs_stale_release", observed=stale,
           expected=posixpath.join(current.resolved, "..."))  # fmt: skip


def verify_unit(_: Profile, svc: Service) -> VerifyUnit:
    """``systemd-analyze verify`` of the service's unit."""
    assert svc.unit is not None
    return VerifyUnit(unit=svc.unit)


@check(
    "systemd.unit.verify_clean",
    title="systemd-analyze verify finds nothing wrong with the unit",
    targets=_select.units,
    needs_systemd=True,
    observe=verify_unit,
    remediation="Fix what `systemd-analyze verify {unit}` reports (unknown or misspelt settings are silently "
    "ignored by systemd).",
    severity="high",
)
def test_unit_verify_clean(target: Service, obs: VerifyResult) -> None:
    """Verification exits 0 and prints nothing."""
    expect(obs.exit_code == 0 and not obs.messages,
           f"systemd-analyze verify {target.unit} (exit {obs.exit_code}): {' | '.join(obs.messages[:3])}",
           reason="unit_verify_failed", observed=list(obs.messages[:10]), expected=[])  # fmt: skip


def container_runtimes(_: Profile, __: HostTarget) -> FindContainerRuntimes:
    """Container runtimes on the host."""
    return FindContainerRuntimes()


@check(
    "host.runtime.no_containers",
    title="No container runtime runs on the host (services run as host processes)",
    targets=_select.container_free_host,
    observe=container_runtimes,
    remediation="Run the services as host processes under systemd and remove the container runtime: the "
    "topology forbids Docker, Compose and Kubernetes.",
)
def test_no_container_runtime(target: HostTarget, obs: ContainerRuntimes) -> None:
    """No container runtime process is running and no runtime API socket exists."""
    found = {"processes": list(obs.processes), "sockets": list(obs.sockets)}
    expect(not obs.processes and not obs.sockets, f"container runtime present on the host: {found}",
           reason="container_runtime_present", observed=found, expected={"processes": [], "sockets": []})  # fmt: skip
