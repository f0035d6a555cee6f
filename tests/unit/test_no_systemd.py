"""A host without systemd is recognised: its unit checks say so instead of failing with empty messages."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import pytest
import testinfra

from conformance.errors import NoSystemd
from conformance.probes.base import Context
from conformance.probes.systemd import ShowUnit, VerifyUnit
from conformance.profile import ProbeSettings


@dataclass
class _Result:
    rc: int
    stdout: str
    stderr: str


class _Host:
    """The local host, with systemd's runtime directory looked up at ``marker`` instead (present or not)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.local = testinfra.get_host("local://")

    def run(self, command: str, *args: str) -> _Result:
        cmd = self.local.backend.get_command(command, *args).replace("/run/systemd/system", self.marker)
        done = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=30, check=False)
        return _Result(done.returncode, done.stdout, done.stderr)


@pytest.mark.parametrize(
    "probe", [ShowUnit(unit="ouroboros-api.service"), VerifyUnit(unit="ouroboros-api.service")]
)
def test_no_systemd_is_named(probe: ShowUnit | VerifyUnit) -> None:
    """Without /run/systemd/system the probe raises NoSystemd naming PID 1 and what to set."""
    ctx = Context(settings=ProbeSettings(), host=_Host("/nonexistent/gates-no-systemd"))
    with pytest.raises(NoSystemd, match=r"runs no systemd \(PID 1 is .+\).*process_manager=none"):
        probe.observe(ctx)


def test_verify_keeps_its_reason() -> None:
    """Where systemd-analyze fails for a reason outside the unit's own files, its words reach the result."""
    ctx = Context(settings=ProbeSettings(), host=_Host("/"))  # "systemd runs": the marker directory exists
    result = VerifyUnit(unit="gates-no-such-unit.service").observe(ctx)  # systemd-analyze ships with systemd
    assert result.exit_code != 0
    assert result.messages
    assert all(m.strip() for m in result.messages)
