"""The running environment of a listener, digested on the target so secrets never leave it.

Each key is read in one of three modes: ``value`` (the value and its digest), ``digest`` (the sha256
of the value only: a secret), ``url`` (its digest and the URL with any password removed, so the
database it names can be seen without the password).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from conformance.errors import ProbeError, ProbeUnreachable
from conformance.probes.base import Context
from conformance.probes.systemd import LISTENER_PIDS

Mode = Literal["value", "digest", "url"]
_MODE_FLAG = {"value": "v", "digest": "h", "url": "u"}

_DIGEST = (
    LISTENER_PIDS
    + r"""shift
[ -n "$pids" ] || { echo "nolistener"; exit 0; }
for pid in $pids; do
  [ -r "/proc/$pid/environ" ] || { echo "unreadable=$pid"; continue; }
  echo "pid=$pid"
  for spec in "$@"; do
    mode=${spec%%:*}; key=${spec#*:}
    line=$(tr '\0' '\n' < "/proc/$pid/environ" | grep -m1 "^$key=") || { echo "absent:$key"; continue; }
    val=${line#*=}
    sum=$(printf '%s' "$val" | sha256sum | cut -c1-64)
    case $mode in
      v) printf 'env:%s=%s %s\n' "$key" "$sum" "$val" ;;
      u) printf 'env:%s=%s %s\n' "$key" "$sum" "$(printf '%s' "$val" | sed -E 's#^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):[^@/]*@#\1@#')" ;;
      *) printf 'env:%s=%s\n' "$key" "$sum" ;;
    esac
  done
  exit 0
done
"""
)


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvEntry:
    """One key of the running environment: its sha256, and what may be shown of it (None for a secret)."""

    key: str
    sha256: str
    shown: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningEnvironment:
    """The named keys of the first readable listener on ``port``; keys it lacks are in ``absent``."""

    port: int
    pid: int
    entries: tuple[EnvEntry, ...]
    absent: tuple[str, ...]

    def entry(self, key: str) -> EnvEntry | None:
        """The key's entry, or None when the process has no such variable."""
        return next((e for e in self.entries if e.key == key), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerEnvDigest:
    """Read ``keys`` (each with its mode) from ``/proc/<pid>/environ`` of the process listening on ``port``."""

    port: int
    keys: tuple[tuple[str, Mode], ...]

    def observe(self, ctx: Context) -> RunningEnvironment:
        """One command; a secret's value is digested on the target and only the digest comes back."""
        specs = [f"{_MODE_FLAG[mode]}:{key}" for key, mode in self.keys]
        result = ctx.host.run("bash -c %s gates-envdigest %s " + " ".join(["%s"] * len(specs)),
                              _DIGEST, str(self.port), *specs)  # fmt: skip
        if result.rc != 0:
            raise ProbeError(
                f"cannot read the environment of port {self.port}'s listener: {result.stderr.strip()}"
            )
        lines = result.stdout.splitlines()
        if "nolistener" in lines:
            raise ProbeUnreachable(f"nothing listens on port {self.port}")
        pid = next((int(x[4:]) for x in lines if x.startswith("pid=") and x[4:].isdigit()), None)
        if pid is None:
            raise ProbeError(f"the environment of port {self.port}'s listener is not readable (run as root)")
        entries: list[EnvEntry] = []
        absent: list[str] = []
        for line in lines:
            if line.startswith("absent:"):
                absent.append(line[7:])
            elif line.startswith("env:"):
                key, _, rest = line[4:].partition("=")
                digest, _, shown = rest.partition(" ")
                mode = dict(self.keys).get(key, "digest")
                entries.append(EnvEntry(key=key, sha256=digest, shown=None if mode == "digest" else shown))
        return RunningEnvironment(port=self.port, pid=pid, entries=tuple(entries), absent=tuple(absent))
