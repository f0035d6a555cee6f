"""Scheduled jobs: timers exist, are enabled and active, keep their calendar, last ran well, and their output is fresh."""

from __future__ import annotations

import json
import re

from conformance import _schemas
from conformance.checks import check, expect
from conformance.errors import JobRunning, Undetermined
from conformance.probes.files import NewestFile, ReadNewest
from conformance.probes.systemd import ShowUnit, UnitInfo
from conformance.profile import Profile, Timer
from conformance.suite import _select
from conformance.suite._units import expect_loaded, expect_state

_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d|w)")
_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def span_seconds(text: str) -> float | None:
    """Seconds in a systemd time span such as ``2min``, ``1h 30min`` or ``0``."""
    text = text.strip()
    if text in ("0", ""):
        return 0.0 if text == "0" else None
    parts = _SPAN.findall(text)
    return sum(float(n) * _SECONDS[u] for n, u in parts) if parts else None


def show_timer(_: Profile, timer: Timer) -> ShowUnit:
    """``systemctl show`` of the timer unit."""
    return ShowUnit(unit=timer.unit)


@check(
    "schedule.timer.enabled",
    title="The timer exists and is enabled",
    targets=_select.timers,
    needs_systemd=True,
    observe=show_timer,
    remediation="Enable the timer: systemctl enable --now {unit}.",
)
def test_timer_enabled(target: Timer, obs: UnitInfo) -> None:
    """The timer unit is loaded and enabled."""
    expect_state(obs, "UnitFileState", "enabled", kind="timer", reason="timer_not_enabled")


@check(
    "schedule.timer.active",
    title="The timer is active (waiting to fire)",
    targets=_select.timers,
    needs_systemd=True,
    observe=show_timer,
    remediation="Start the timer (systemctl start {unit}); a stopped timer never runs its job.",
)
def test_timer_active(target: Timer, obs: UnitInfo) -> None:
    """The timer's ActiveState is active."""
    expect_state(obs, "ActiveState", "active", kind="timer", reason="timer_not_active")


@check(
    "schedule.timer.calendar",
    title="The timer fires on the declared calendar, with the declared randomized delay",
    targets=_select.timers,
    needs_systemd=True,
    observe=show_timer,
    remediation="Restore OnCalendar= and RandomizedDelaySec= of {unit} to the declared schedule, then daemon-reload.",
)
def test_timer_calendar(target: Timer, obs: UnitInfo) -> None:
    """The timer's only calendar trigger is the declared one, and its randomized delay matches."""
    expect_loaded(obs, kind="timer")
    calendars = re.findall(r"OnCalendar=([^;]+?)\s*;", obs.get("TimersCalendar"))
    delay = span_seconds(obs.get("RandomizedDelayUSec"))
    got = {"onCalendar": calendars, "randomizedDelaySeconds": delay}
    want = {
        "onCalendar": [target.on_calendar],
        "randomizedDelaySeconds": float(target.randomized_delay_s)
        if target.randomized_delay_s is not None
        else delay,
    }
    expect(got == want, f"timer {target.unit} fires on {calendars} with delay {delay}s; expected "
           f"{[target.on_calendar]} with {want['randomizedDelaySeconds']}s", reason="timer_calendar_mismatch",
           observed=got, expected=want)  # fmt: skip


def show_service(_: Profile, timer: Timer) -> ShowUnit:
    """``systemctl show`` of the service the timer starts."""
    return ShowUnit(unit=timer.service)


@check(
    "schedule.job.last_run_ok",
    title="The job the timer starts has run, and its last run succeeded",
    targets=_select.timers,
    needs_systemd=True,
    observe=show_service,
    remediation="Read why the job failed (journalctl -u {service}), fix it and run it once by hand "
    "(systemctl start {service}).",
)
def test_job_last_run_ok(target: Timer, obs: UnitInfo) -> None:
    """The service has exited at least once, with Result=success and exit status 0.

    While the job runs (a oneshot is ``activating``), systemd has already cleared the previous run's exit
    status and timestamp, so its outcome cannot be read: that is undetermined, not a job that never ran.
    """
    if obs.get("ActiveState") in ("activating", "deactivating"):
        raise JobRunning(
            f"job {target.service} is running now ({obs.get('ActiveState')}/{obs.get('SubState')}): systemd "
            "keeps no outcome of its previous run meanwhile; certify again once it has finished"
        )
    ran = bool(obs.get("ExecMainExitTimestamp").strip())
    got = {"ran": ran, "result": obs.get("Result"), "status": obs.get("ExecMainStatus")}
    want = {"ran": True, "result": "success", "status": "0"}
    expect(got == want, f"job {target.service}: ran={ran}, Result={got['result']}, exit status {got['status']}",
           reason="job_last_run_failed" if ran else "job_never_ran", observed=got, expected=want)  # fmt: skip


def newest_output(_: Profile, timer: Timer) -> ReadNewest:
    """The newest file the job wrote."""
    assert timer.output is not None
    return ReadNewest(glob=timer.output.glob)


@check(
    "schedule.output.fresh",
    title="The job's newest output exists and is younger than its period plus grace",
    targets=_select.timer_outputs,
    observe=newest_output,
    remediation="The job has not written its output recently: check that its timer fires and the job succeeds.",
)
def test_output_fresh(target: Timer, obs: NewestFile) -> None:
    """A file matching the declared glob exists and its age is within the declared maximum."""
    assert target.output is not None
    limit = target.output.max_age_s
    expect(obs.path is not None, f"no file matches {target.output.glob}", reason="job_output_missing",
           observed=None, expected=target.output.glob)  # fmt: skip
    expect(obs.age_s is not None and obs.age_s <= limit, f"{obs.path} is {obs.age_s}s old; expected at most {limit}s",
           reason="job_output_stale", observed=obs.age_s, expected=limit)  # fmt: skip


@check(
    "schedule.output.shape",
    title="The job's newest output has the documented shape and reports success",
    targets=_select.timer_outputs,
    observe=newest_output,
    remediation="The job writes a malformed summary, or one reporting its own failure: read it and the job's log "
    "(journalctl -u {service}), fix the cause and run the job again.",
)
def test_output_shape(target: Timer, obs: NewestFile) -> None:
    """The newest output is JSON that satisfies the declared schema and, where the profile declares where the
    output reports its outcome, reports success."""
    assert target.output is not None
    if obs.path is None or obs.text is None:
        raise Undetermined(f"no output to inspect; see schedule.output.fresh[{target.name}]")
    try:
        document = json.loads(obs.text)
    except ValueError as exc:
        expect(False, f"{obs.path} is not JSON: {exc}", reason="job_output_not_json", observed=str(exc),
               expected="JSON")  # fmt: skip
        return
    if target.output.schema is not None:
        problems = [
            f"{_schemas.pointer(e.absolute_path)}: {e.message}"
            for e in _schemas.errors(document, target.output.schema)
        ]
        expect(not problems, f"{obs.path} does not match {target.output.schema}: {problems[0] if problems else ''}",
               reason="job_output_malformed", observed=problems[:5], expected=target.output.schema)  # fmt: skip
    status = target.output.status
    if status is None:
        return
    if not isinstance(document, dict) or status.field not in document:
        expect(False, f"{obs.path} has no top-level {status.field!r}, where the job reports its outcome",
               reason="job_output_malformed", observed=None, expected={status.field: list(status.ok)})  # fmt: skip
        return
    value = document[status.field]
    expect(value in status.ok, f"{obs.path} reports {status.field}={value!r}: the job's last run failed "
           f"(success is {' or '.join(map(repr, status.ok))})", reason="job_output_reports_failure",
           observed={status.field: value}, expected={status.field: list(status.ok)})  # fmt: skip
