"""Running processes and commands on the target: a listener's environment, a harness run."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from conformance.errors import ProbeError, ProbeTimeout, ProbeUnreachable
from conformance.probes.base import Context
from conformance.probes.systemd import LISTENER_PIDS

_ENVIRON = (
    LISTENER_PIDS
    + r"""shift
[ -n "$pids" ] || { echo "nolistener"; exit 0; }
for pid in $pids; do
  echo "pid=$pid"
  [ -r "/proc/$pid/environ" ] || { echo "unreadable"; continue; }
  for key in "$@"; do
    tr '\0' '\n' < "/proc/$pid/environ" | grep -m1 "^$key=" | sed 's/^/env:/' || true
  done
done
"""
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessEnvironment:
    """Selected environment variables of the process(es) listening on a port."""

    port: int
    pids: tuple[int, ...]
    values: tuple[tuple[str, str], ...]  # (key, value) of the first listener that has the key

    def get(self, key: str) -> str | None:
        """The variable's value, or None when no listener has it."""
        return next((v for k, v in self.values if k == key), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerEnvironment:
    """Read ``keys`` from ``/proc/<pid>/environ`` of the processes listening on ``port``.

    Only the named keys leave the host; the observation holds no other variable.
    """

    port: int
    keys: tuple[str, ...]

    def observe(self, ctx: Context) -> ProcessEnvironment:
        """One command: find the listeners, read each one's environment."""
        result = ctx.host.run("bash -c %s gates-environ %s " + " ".join(["%s"] * len(self.keys)),
                              _ENVIRON, str(self.port), *self.keys)  # fmt: skip
        if result.rc != 0:
            raise ProbeError(
                f"cannot read the environment of port {self.port}'s listener: {result.stderr.strip()}"
            )
        lines = result.stdout.splitlines()
        if "nolistener" in lines:
            raise ProbeUnreachable(f"nothing listens on port {self.port}")
        if "unreadable" in lines:
            raise ProbeError(f"the environment of port {self.port}'s listener is not readable (run as root)")
        pids = tuple(int(x[4:]) for x in lines if x.startswith("pid=") and x[4:].isdigit())
        values: dict[str, str] = {}
        for line in lines:
            if line.startswith("env:"):
                key, _, value = line[4:].partition("=")
                values.setdefault(key, value)
        return ProcessEnvironment(port=self.port, pids=pids, values=tuple(sorted(values.items())))


_HARNESS = r"""t="$1"; shift
dir=$(mktemp -d /tmp/gates-harness.XXXXXX) || exit 97
trap 'rm -rf "$dir"' EXIT
timeout "$t" "$@" --output "$dir/artifact.json" >"$dir/stdout" 2>"$dir/stderr"
echo "rc=$?"
echo "output=$dir/artifact.json"
echo "stdout=$(head -c 65536 "$dir/stdout" | base64 -w0)"
echo "stderr=$(tail -c 2000 "$dir/stderr" | base64 -w0)"
if [ -f "$dir/artifact.json" ]; then echo "artifact=$(head -c 1048576 "$dir/artifact.json" | base64 -w0)"; fi
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class HarnessRun:
    """What a harness command did: exit code, stdout, and the artifact it wrote (then removed)."""

    command: tuple[str, ...]
    exit_code: int
    output_path: str
    stdout: str
    stderr: str
    artifact: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunHarness:
    """Run a harness with ``--output`` in a scratch directory on the target, collect, and clean up."""

    argv: tuple[str, ...]
    timeout_s: int

    def observe(self, ctx: Context) -> HarnessRun:
        """Run it under ``timeout``; the scratch directory is removed whatever happens."""
        fmt = "bash -c %s gates-harness %s " + " ".join(["%s"] * len(self.argv))
        result = ctx.host.run(fmt, _HARNESS, str(self.timeout_s + 5), *self.argv)
        fields: dict[str, str] = {}
        for line in result.stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep and key in ("rc", "output", "stdout", "stderr", "artifact"):
                fields[key] = value
        if "rc" not in fields:
            raise ProbeError(f"could not run {self.argv[0]}: {result.stderr.strip() or result.rc}")
        try:
            decode = {
                k: base64.b64decode(fields.get(k, "")).decode("utf-8", "replace")
                for k in ("stdout", "stderr")
            }
            artifact = (
                base64.b64decode(fields["artifact"]).decode("utf-8", "replace")
                if "artifact" in fields
                else None
            )
        except (binascii.Error, ValueError) as exc:
            raise ProbeError(f"unreadable output from {self.argv[0]}: {exc}") from exc
        code = int(fields["rc"])
        if code in (124, 137):
            raise ProbeTimeout(f"{self.argv[0]} did not finish within {self.timeout_s + 5}s")
        if code in (126, 127):
            raise ProbeError(f"{self.argv[0]} cannot be executed on the target: {decode['stderr'].strip()}")
        return HarnessRun(
            command=self.argv,
            exit_code=code,
            output_path=fields.get("output", ""),
            stdout=decode["stdout"],
            stderr=decode["stderr"],
            artifact=artifact,
        )
