"""Reference processes are stopped *and reaped*; a process that has exited is no container runtime."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.probes.base import Context
from conformance.probes.systemd import FindContainerRuntimes
from conformance.profile import ProbeSettings
from conformance.targets import make_host
from fixtures.procs import spawn, stop

# A live `containerd` is seen by every concurrent certification on the machine.
pytestmark = pytest.mark.machine_wide


def _state(pid: int) -> str | None:
    """The process state letter of ``pid``, or None when it is gone from the process table."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@pytest.fixture
def containerd(tmp_path: Path) -> Path:
    """A harmless program whose process name is ``containerd``."""
    binary = tmp_path / "containerd"
    shutil.copy2("/bin/sleep", binary)
    return binary


def test_stop_leaves_no_zombie(containerd: Path, tmp_path: Path) -> None:
    """After `stop` the process is not even a zombie: a defunct ``containerd`` would still show in ``ps``."""
    for _ in range(5):  # the race is between the child dying and the first look at it
        proc = spawn("containerd", [str(containerd), "infinity"], log=tmp_path / "log")
        stop(proc)
        assert _state(proc.pid) is None


@pytest.fixture
def zombie(containerd: Path) -> Iterator[int]:
    """A ``containerd`` child that has exited and is deliberately left unreaped."""
    popen = subprocess.Popen([str(containerd), "infinity"])
    popen.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _state(popen.pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _state(popen.pid) == "Z"
    yield popen.pid
    popen.wait()


def _runtimes() -> tuple[str, ...]:
    ctx = Context(settings=ProbeSettings(), host=make_host("local"))
    return FindContainerRuntimes().observe(ctx).processes


def test_exited_runtime_is_not_running(zombie: int) -> None:
    """A zombie named ``containerd`` runs nothing and is not reported."""
    assert "containerd" not in _runtimes()


def test_running_runtime_is_reported(containerd: Path, tmp_path: Path) -> None:
    """The same program, alive, is reported: the zombie filter hides only what has exited."""
    proc = spawn("containerd", [str(containerd), "infinity"], log=tmp_path / "log")
    try:
        assert "containerd" in _runtimes()
    finally:
        stop(proc)
