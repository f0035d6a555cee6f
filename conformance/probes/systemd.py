"""systemd units and the processes behind listening sockets, read through the host backend."""

from __future__ import annotations

from dataclasses import dataclass

from conformance.errors import NoSystemd, ProbeError
from conformance.probes.base import Context

UNIT_PROPERTIES = (
    "Id", "LoadState", "ActiveState", "SubState", "UnitFileState", "User", "Group", "MainPID", "ControlGroup",
    "EnvironmentFiles", "WorkingDirectory", "FragmentPath", "DropInPaths", "NoNewPrivileges", "PrivateTmp",
    "ProtectSystem", "ProtectHome", "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups",
    "RestrictSUIDSGID", "LockPersonality", "RestrictAddressFamilies", "UMask", "ReadWritePaths",
    "TimersCalendar", "RandomizedDelayUSec", "Result", "ExecMainStatus", "ExecMainExitTimestamp",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitInfo:
    """``systemctl show`` of one unit."""

    unit: str
    properties: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str:
        """A property's value ("" when absent)."""
        return next((v for k, v in self.properties if k == name), "")

    @property
    def exists(self) -> bool:
        """Whether systemd found a unit file for it."""
        return self.get("LoadState") == "loaded"

    def environment_files(self) -> list[str]:
        """Paths of ``EnvironmentFile=`` entries (without the ``(ignore_errors=...)`` suffix)."""
        return [
            v.split(" (", 1)[0].strip() for k, v in self.properties if k == "EnvironmentFiles" and v.strip()
        ]


# Shell prefix: on a host where systemd is not PID 1, print a marker (with PID 1's name) and stop.
_IF_SYSTEMD = (
    '[ -d /run/systemd/system ] || { echo "gates-no-systemd $(cat /proc/1/comm 2>/dev/null || echo unknown)"; '
    "exit 0; }; "
)


def _refuse_without_systemd(stdout: str, unit: str) -> None:
    """Raise `NoSystemd` when the command found no running systemd on the target."""
    first = stdout.split("\n", 1)[0]
    if first.startswith("gates-no-systemd"):
        pid1 = first.removeprefix("gates-no-systemd").strip() or "unknown"
        raise NoSystemd(
            f"the target runs no systemd (PID 1 is {pid1!r}), so {unit} cannot be observed; if no service "
            "manager runs this deployment, certify it with the profile's processManager set to none "
            "(Oroboros: --set process_manager=none)"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ShowUnit:
    """Ask systemd for a unit's state and settings."""

    unit: str

    def observe(self, ctx: Context) -> UnitInfo:
        """Run ``systemctl show``; a host without a running systemd cannot be observed."""
        result = ctx.host.run("sh -c %s gates-show %s %s", _IF_SYSTEMD + 'systemctl show "$1" -p "$2"',
                              self.unit, ",".join(UNIT_PROPERTIES))  # fmt: skip
        _refuse_without_systemd(result.stdout, self.unit)
        if result.rc != 0:
            raise ProbeError(f"systemctl show {self.unit} failed: {(result.stderr or result.stdout).strip()}")
        props: list[tuple[str, str]] = []
        for line in result.stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                props.append((key, value))
        return UnitInfo(unit=self.unit, properties=tuple(props))


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessInfo:
    """A process listening on a port: who runs it, in which cgroup, from which directory."""

    pid: int
    user: str
    cgroup: str
    cwd: str


# Shell: the PIDs holding a listening TCP socket on port $1, one per line, in $pids.
LISTENER_PIDS = r"""pids=$(ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -un)
"""

_LISTENERS = (
    LISTENER_PIDS
    + r"""
for pid in $pids; do
  cg=$(grep -m1 -E '^(0::|[0-9]+:name=systemd:)' "/proc/$pid/cgroup" 2>/dev/null | cut -d: -f3-)
  printf '%s\t%s\t%s\t%s\n' "$pid" "$(stat -c %U "/proc/$pid" 2>/dev/null)" "$cg" "$(readlink -f "/proc/$pid/cwd" 2>/dev/null)"
done
"""
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerProcesses:
    """The processes that hold a listening TCP socket on ``port``."""

    port: int

    def observe(self, ctx: Context) -> tuple[ProcessInfo, ...]:
        """Run ``ss -ltnp`` and read each owner's ``/proc`` entries."""
        result = ctx.host.run("bash -c %s gates-listeners %s", _LISTENERS, str(self.port))
        if result.rc != 0:
            raise ProbeError(
                f"cannot list the processes on port {self.port}: {result.stderr.strip() or result.rc}"
            )
        out = []
        for line in result.stdout.splitlines():
            fields = line.split("\t")
            if len(fields) == 4 and fields[0].isdigit():
                out.append(ProcessInfo(pid=int(fields[0]), user=fields[1], cgroup=fields[2], cwd=fields[3]))
        return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyResult:
    """What ``systemd-analyze verify`` said about a unit."""

    unit: str
    exit_code: int
    messages: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyUnit:
    """Run ``systemd-analyze verify`` (without man-page lookups) on an installed unit."""

    unit: str

    def observe(self, ctx: Context) -> VerifyResult:
        """Collect its messages; a host without systemd-analyze cannot be observed."""
        result = ctx.host.run("sh -c %s gates-verify %s", _IF_SYSTEMD + 'systemd-analyze verify --man=no "$1"',
                              self.unit)  # fmt: skip
        _refuse_without_systemd(result.stdout, self.unit)
        text = (result.stderr + result.stdout).strip()
        if result.rc != 0 and "not found" in text and "systemd-analyze" in text:
            raise ProbeError(f"systemd-analyze is not available on the target: {text}")
        # verify loads the unit's dependencies too; keep only what it says about this unit's own files
        names = {self.unit}
        if "@" in self.unit:
            prefix, _, rest = self.unit.partition("@")
            names.add(f"{prefix}@.{rest.rsplit('.', 1)[-1]}")
        own = [
            line
            for line in text.splitlines()
            if line.startswith(f"{self.unit}:") or any(f"/{n}:" in line or f"/{n}.d/" in line for n in names)
        ]
        if result.rc != 0 and not own:  # it failed for a reason outside the unit's files: keep what it said
            own = text.splitlines()[-3:] or [f"systemd-analyze verify exited {result.rc} without a message"]
        return VerifyResult(unit=self.unit, exit_code=result.rc, messages=tuple(own))


RUNTIME_PROCESSES = ("dockerd", "containerd", "containerd-shim", "podman", "conmon", "crio", "kubelet", "runc",
                     "lxc-start", "docker-proxy")  # fmt: skip
RUNTIME_SOCKETS = ("/run/docker.sock", "/var/run/docker.sock", "/run/containerd/containerd.sock",
                   "/run/podman/podman.sock", "/run/crio/crio.sock")  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerRuntimes:
    """Container runtime processes and API sockets present on the host."""

    processes: tuple[str, ...]
    sockets: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FindContainerRuntimes:
    """Look for running container runtimes (by process name) and their API sockets."""

    def observe(self, ctx: Context) -> ContainerRuntimes:
        """``ps -eo comm`` and ``test -S`` on the well-known sockets."""
        # Only processes in the PID namespace the command runs in (the host's own) count: a container *on* the host shows its
        # processes in `ps` too, but they serve that container, not this host.
        # A zombie (state Z) has exited and runs nothing, whatever its name.
        ps = ctx.host.run("sh -c %s", 'echo "$(readlink /proc/$$/ns/pid)"; ps -eo pidns=,stat=,comm=')
        if ps.rc != 0:
            raise ProbeError(f"cannot list processes on the target: {ps.stderr.strip() or ps.rc}")
        lines = ps.stdout.splitlines()
        own = lines[0].strip().removeprefix("pid:[").removesuffix("]") if lines else ""
        names = set()
        for line in lines[1:]:
            fields = line.split(None, 2)
            if len(fields) == 3 and fields[0] == own and not fields[1].startswith("Z"):
                names.add(fields[2].strip())
        found = sorted(n for n in names if any(n == r or n.startswith(r + "-") for r in RUNTIME_PROCESSES))
        script = "for s in " + " ".join(RUNTIME_SOCKETS) + '; do [ -S "$s" ] && echo "$s"; done; true'
        socks = ctx.host.run("sh -c %s", script)
        return ContainerRuntimes(processes=tuple(found), sockets=tuple(sorted(set(socks.stdout.split()))))


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswdEntry:
    """A user's account entry."""

    user: str
    exists: bool
    uid: int | None
    shell: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadPasswd:
    """``getent passwd`` of one user on the host."""

    user: str

    def observe(self, ctx: Context) -> PasswdEntry:
        """Look the user up; an unknown user is an observation (exit 2), other failures are not."""
        result = ctx.host.run("getent passwd %s", self.user)
        if result.rc == 2:
            return PasswdEntry(user=self.user, exists=False, uid=None, shell="")
        fields = result.stdout.strip().split(":")
        if result.rc != 0 or len(fields) < 7:
            raise ProbeError(f"getent passwd {self.user} failed: {result.stderr.strip() or result.rc}")
        return PasswdEntry(user=self.user, exists=True, uid=int(fields[2]), shell=fields[6])
