"""Self-test configuration: under CI=true a skipped test is a failure, never a silent gap."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Self-tests run in parallel (xdist workers, and several checkouts on one machine). A fault that is visible
# machine-wide -- a daemon every `ps` sees -- would be observed by every concurrent certification, so such a fault
# (or a test marked `machine_wide`) takes this lock exclusively and every other test takes it shared.
_MACHINE_LOCK = Path(os.environ.get("TMPDIR", "/tmp")) / "gates-selftest-machine.lock"


@pytest.fixture(autouse=True)
def _machine_wide_isolation(request: pytest.FixtureRequest) -> Iterator[None]:
    """Serialize tests that inject machine-visible faults against every other test."""
    callspec = getattr(request.node, "callspec", None)
    fault = callspec.params.get("fault") if callspec is not None else None
    exclusive = (
        bool(getattr(fault, "host_wide", False))
        or request.node.get_closest_marker("machine_wide") is not None
    )
    with _MACHINE_LOCK.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    """Say loudly when tests were skipped."""
    skipped = terminalreporter.stats.get("skipped", [])
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} test(s) SKIPPED: a skipped tier is a gap in the evidence", red=True, bold=True
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true, fail the run if anything was skipped."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if os.environ.get("CI", "").lower() == "true" and skipped and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
