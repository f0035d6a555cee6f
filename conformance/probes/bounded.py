"""Every command a probe runs on the target is bounded in time and in output.

The check run wraps its host (local, SSH or a network namespace) in `BoundedHost`: a command
runs under ``timeout`` and its stdout and stderr pass through ``head -c``, so a target that
lists a million processes, or a command that never returns, costs at most the output cap and
the command timeout. Past the cap the command is stopped and the probe is
`ProbeOutputTooLarge`; past the timeout it is `ProbeTimeout`. A probe's own, shorter ``timeout``
(a harness, a drill step) still reports itself.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from typing import Any

from conformance.errors import ProbeOutputTooLarge, ProbeTimeout
from conformance.probes.base import Host

COMMAND_TIMEOUT_S = 300.0
COMMAND_MAX_BYTES = 16 << 20

# stdout and stderr each through their own ``head -c``, both members of the pipeline, so the command holds exactly
# fds 0-2 (no process-substitution pipe a daemon it starts in the background would keep open) and its stderr is
# flushed before the exit code is read.
_WRAP = (
    "set -o pipefail; t=$1; cap=$2; shift 2; "
    '{ timeout -k 2 "$t" sh -c "$1" 2>&1 >&3 3>&- | head -c "$cap" >&2 3>&-; } 3>&1 | head -c "$cap"; '
    "exit ${PIPESTATUS[0]}"
)


@dataclass(frozen=True, slots=True)
class BoundedHost:
    """A `Host` whose every command is bounded by ``timeout_s`` and ``max_bytes`` of output."""

    inner: Host
    timeout_s: float = COMMAND_TIMEOUT_S
    max_bytes: int = COMMAND_MAX_BYTES

    def run(self, command: str, *args: str) -> Any:
        """Run ``command`` (formatted with quoted ``args``, as testinfra does) within the bounds."""
        line = command % tuple(shlex.quote(a) for a in args) if args else command
        started = time.monotonic()
        result = self.inner.run(
            "bash -c %s gates-bounded %s %s %s", _WRAP, f"{self.timeout_s:g}", str(self.max_bytes + 1), line
        )
        shown = line if len(line) <= 120 else line[:117] + "..."
        if len(result.stdout_bytes) > self.max_bytes or len(result.stderr_bytes) > self.max_bytes:
            raise ProbeOutputTooLarge(
                f"command {shown!r} wrote more than {self.max_bytes} bytes; it was stopped"
            )
        if result.rc in (124, 137) and time.monotonic() - started >= self.timeout_s:
            raise ProbeTimeout(f"command {shown!r} did not finish within {self.timeout_s:g}s; it was stopped")
        return result
