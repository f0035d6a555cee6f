"""Commands on the target are bounded: a flood of output or a command that never returns ends the probe with its
own reason, and a probe's own shorter timeout still reports itself."""

from __future__ import annotations

import subprocess

import pytest

from conformance.errors import ProbeError, ProbeOutputTooLarge, ProbeTimeout
from conformance.probes.base import Context, Prober
from conformance.probes.bounded import BoundedHost
from conformance.probes.files import ReadFile
from conformance.profile import ProbeSettings
from conformance.targets import make_host

HOST = BoundedHost(make_host("local"), timeout_s=1.0, max_bytes=4096)


def test_output_and_exit_code_pass_through() -> None:
    """Arguments are quoted as testinfra quotes them; stdout, stderr and the exit code are the command's."""
    result = HOST.run("printf %s; echo err >&2; exit 3", "a b'c")
    assert (result.rc, result.stdout, result.stderr) == (3, "a b'c", "err\n")


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ("yes", ProbeOutputTooLarge),
        ("yes >&2", ProbeOutputTooLarge),
        ("seq 1 1000000 | sed 's/^/proc /'", ProbeOutputTooLarge),
        ("sleep 60", ProbeTimeout),
        ("trap '' TERM; sleep 60", ProbeTimeout),
    ],
    ids=["stdout-flood", "stderr-flood", "huge-listing", "never-returns", "ignores-sigterm"],
)
def test_hostile_command_is_stopped(command: str, error: type[ProbeError]) -> None:
    """Past the output cap or the command timeout the command is stopped and the probe errors with that reason."""
    with pytest.raises(error) as raised:
        HOST.run(command)
    assert command[:20] in str(raised.value)


def test_a_daemon_the_command_leaves_behind_does_not_hold_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A command that starts a daemon with its stdio redirected returns while the daemon still runs: the daemon
    inherits no descriptor of the bounds (a drill's put-back step may start one)."""
    done = tmp_path / "daemon-done"
    daemon = f"(sleep 20; touch {done}) </dev/null >/dev/null 2>&1 &"
    try:
        result = HOST.run(f"{daemon} echo started; echo err >&2")
        assert (result.rc, result.stdout, result.stderr) == (0, "started\n", "err\n")
        assert not done.exists()  # returned before the daemon ended, not when it let go of the output
    finally:
        subprocess.run(["pkill", "-f", f"touch {done}"], check=False)


def test_a_probes_own_timeout_still_reports_itself() -> None:
    """An inner ``timeout`` shorter than the command bound is the command's exit code, for the probe to read."""
    assert HOST.run("timeout 0.1 sleep 5").rc == 124


def test_file_read_is_capped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A file larger than the probe's cap is read only up to the cap and reported as too large."""
    big = tmp_path / "big.env"
    big.write_bytes(b"A=1\n" * 100_000)
    ctx = Context(settings=ProbeSettings(), host=HOST)
    seen = Prober(ctx).get(ReadFile(path=str(big), max_bytes=1000))
    assert seen.error is not None
    assert "larger than 1000 bytes" in seen.error
