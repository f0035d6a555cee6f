"""What runs on a host, for writing a starting profile: systemd units of a type, a unit's files, a command line."""

from __future__ import annotations

from dataclasses import dataclass

from conformance.errors import ProbeError
from conformance.probes.base import Context
from conformance.probes.systemd import _IF_SYSTEMD, _refuse_without_systemd


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitList:
    """Names of the loaded units of one type (``service`` or ``timer``)."""

    kind: str
    units: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListUnits:
    """``systemctl list-units --type=KIND --all``: every loaded unit of a type, whatever its state."""

    kind: str

    def observe(self, ctx: Context) -> UnitList:
        """One command; a host without a running systemd cannot be observed (`NoSystemd`)."""
        script = _IF_SYSTEMD + 'systemctl list-units --type="$1" --all --plain --no-legend --no-pager'
        result = ctx.host.run("sh -c %s gates-units %s", script, self.kind)
        _refuse_without_systemd(result.stdout, f"the {self.kind} units")
        if result.rc != 0:
            raise ProbeError(
                f"systemctl list-units --type={self.kind} failed: {result.stderr.strip() or result.rc}"
            )
        names = [line.split()[0] for line in result.stdout.splitlines() if line.split()]
        return UnitList(kind=self.kind, units=tuple(sorted(n for n in names if n.endswith("." + self.kind))))


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitFiles:
    """``systemctl cat``: the unit file and its drop-ins, each headed by a ``# /path`` line."""

    unit: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CatUnit:
    """Read a unit's files as systemd loads them."""

    unit: str

    def observe(self, ctx: Context) -> UnitFiles:
        """One command; a unit without a file reads as empty text."""
        result = ctx.host.run(
            "sh -c %s gates-cat %s", _IF_SYSTEMD + 'systemctl cat --no-pager -- "$1"', self.unit
        )
        _refuse_without_systemd(result.stdout, self.unit)
        return UnitFiles(unit=self.unit, text=result.stdout if result.rc == 0 else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandLine:
    """A process's arguments (empty once it has exited)."""

    pid: int
    argv: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadCommandLine:
    """Read ``/proc/PID/cmdline``."""

    pid: int

    def observe(self, ctx: Context) -> CommandLine:
        """NUL-separated arguments, one per line on the way back."""
        result = ctx.host.run(
            "sh -c %s gates-cmdline %s", "tr '\\0' '\\n' < \"/proc/$1/cmdline\"", str(self.pid)
        )
        if result.rc != 0:
            return CommandLine(pid=self.pid, argv=())
        return CommandLine(pid=self.pid, argv=tuple(result.stdout.splitlines()))
