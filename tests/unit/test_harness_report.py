"""A failing smoke harness check keeps what the harness said on stderr, bounded; a passing one does not."""

from __future__ import annotations

from conformance.probes.process import HarnessRun
from conformance.suite.test_slots import STDERR_TAIL, _observed


def run(stderr: str) -> HarnessRun:
    """A harness run that wrote ``stderr``."""
    return HarnessRun(command=("h",), exit_code=2, output_path="/tmp/gates-harness.x/a.json", stdout="",
                      stderr=stderr, artifact=None)  # fmt: skip


def test_failure_keeps_stderr_tail() -> None:
    """The last STDERR_TAIL characters, with the scratch path masked."""
    text = "x" * 5000 + "curl: (7) Failed to connect; wrote /tmp/gates-harness.x/a.json"
    got = _observed(run(text), {}, [], ok=False)["stderrTail"]
    assert got.endswith("curl: (7) Failed to connect; wrote <--output>")
    assert len(got) <= STDERR_TAIL


def test_pass_leaves_it_out() -> None:
    """Passing reports stay deterministic: no stderr."""
    assert "stderrTail" not in _observed(run("timing 0.231s"), {}, [])
