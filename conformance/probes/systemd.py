"""systemd units and the processes behind listening sockets, read through the host backend."""

from __future__ import annotations

from dataclasses import dataclass

from conformance.errors import ProbeError
from conformance.probes.base import Context

UNIT_PROPERTIES = (
    "Id", "LoadState", "ActiveState", "SubState", "UnitFileState", "User", "Group", "MainPID", "ControlGroup",
    "EnvironmentFiles", "WorkingDirectory", "FragmentPath", "DropInPaths", "NoNewPrivileges", "PrivateTmp",
    "ProtectSystem", "ProtectHome", "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups",
    "RestrictSUIDSGID", "LockPersonality", "RestrictAddressFamilies", "UMask", "ReadWritePaths",
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ShowUnit:
    """Ask systemd for a unit's state and settings."""

    unit: str

    def observe(self, ctx: Context) -> UnitInfo:
        """Run ``systemctl show``; a host without a running systemd cannot be observed."""
        result = ctx.host.run("systemctl show %s -p %s", self.unit, ",".join(UNIT_PROPERTIES))
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


_LISTENERS = r"""port="$1"
for pid in $(ss -ltnpH "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -un); do
  cg=$(grep -m1 -E '^(0::|[0-9]+:name=systemd:)' "/proc/$pid/cgroup" 2>/dev/null | cut -d: -f3-)
  printf '%s\t%s\t%s\t%s\n' "$pid" "$(stat -c %U "/proc/$pid" 2>/dev/null)" "$cg" "$(readlink -f "/proc/$pid/cwd" 2>/dev/null)"
done
"""


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
