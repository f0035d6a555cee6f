"""``schedule.job.last_run_ok`` on a job that is running right now.

Seen on oroboros-upstream-host: the stale-lease cleanup timer fired (``*:0/15``) while the suite read the
service, and systemd, which clears ``ExecMainExitTimestamp`` and ``ExecMainStatus`` when a run starts, showed
a oneshot ``activating/start`` with no exit: the check said the job had never run. A running job's previous
outcome cannot be read, so the check is undetermined (``job_running``), never failed.
"""

from __future__ import annotations

import pytest

from conformance.checks import CheckFailed
from conformance.errors import JobRunning
from conformance.probes.systemd import UnitInfo
from conformance.profile import Timer, load_profile
from conformance.suite import test_schedule as schedule

SERVICE = "ouroboros-maintenance-stale-leases.service"


def _timer() -> Timer:
    return next(t for t in load_profile("oroboros").timers if t.name == "stale-leases")


def show(**props: str) -> UnitInfo:
    """``systemctl show`` of the job's service with ``props`` (the rest as after a successful run)."""
    base = {"Id": SERVICE, "LoadState": "loaded", "ActiveState": "inactive", "SubState": "dead",
            "Result": "success", "ExecMainStatus": "0", "ExecMainExitTimestamp": "Sun 2026-12-06 19:00:41 UTC"}  # fmt: skip
    return UnitInfo(unit=SERVICE, properties=tuple({**base, **props}.items()))


def test_finished_run_passes() -> None:
    schedule.test_job_last_run_ok(_timer(), show())


@pytest.mark.parametrize("state", [("activating", "start"), ("deactivating", "stop-sigterm")])
def test_running_job_is_undetermined(state: tuple[str, str]) -> None:
    """A oneshot running now, its previous outcome cleared by systemd: job_running, naming the service."""
    active, sub = state
    with pytest.raises(JobRunning, match=rf"{SERVICE} is running now \({active}/{sub}\)"):
        schedule.test_job_last_run_ok(
            _timer(), show(ActiveState=active, SubState=sub, ExecMainExitTimestamp="")
        )


def test_never_ran_still_fails() -> None:
    with pytest.raises(CheckFailed) as caught:
        schedule.test_job_last_run_ok(_timer(), show(ExecMainExitTimestamp=""))
    assert caught.value.reason == "job_never_ran"


def test_failed_run_fails() -> None:
    with pytest.raises(CheckFailed) as caught:
        schedule.test_job_last_run_ok(_timer(), show(Result="exit-code", ExecMainStatus="1"))
    assert caught.value.reason == "job_last_run_failed"
