"""Work loops make progress: judged by what each cycle leaves behind, never by the loop's health answer.

A loop whose every cycle fails keeps answering its health endpoint; its table or log shows no recent
success and a run of failures.
"""

from __future__ import annotations

from conformance.checks import check, expect
from conformance.loops import Loop
from conformance.probes.progress import LoopLog, LoopRows, ProgressSample
from conformance.profile import Profile


def loops(profile: Profile) -> list[Loop]:
    """Every declared work loop."""
    return list(profile.loops)


def loop_progress(profile: Profile, loop: Loop) -> LoopLog | LoopRows:
    """The loop's declared signal: its log lines, or its rows of a table."""
    if loop.log is not None:
        return LoopLog(signal=loop.log, window_s=loop.window_s)
    assert loop.sql is not None
    pg = profile.service(loop.sql.service)
    return LoopRows(
        address=pg.bind,
        port=pg.port,
        dbname=pg.database or "postgres",
        user=pg.db_user or "postgres",
        password=pg.password,
        table=loop.sql.table,
        time_column=loop.sql.time_column,
        where=loop.sql.where,
        success_when=loop.sql.success_when,
        window_s=loop.window_s,
    )


def _seen(obs: ProgressSample, ok: bool, stable: dict[str, object]) -> dict[str, object]:
    # a passing report holds only what does not move from one run to the next, so it hashes alike
    if ok:
        return {"source": obs.source, **stable}
    return {
        "source": obs.source,
        "lastSuccessAgeSeconds": obs.last_success_age_s,
        "lastFailureAgeSeconds": obs.last_failure_age_s,
        "failuresInWindow": obs.failures,
        "successesInWindow": obs.successes,
        "windowSeconds": obs.window_s,
    }


@check(
    "progress.loop.recent_success",
    title="The loop's last successful cycle is recent, within the declared bound",
    targets=loops,
    observe=loop_progress,
    remediation="Loop {name} has not completed a cycle recently: read its log for the failing step (its database, "
    "queue or credentials), fix it and restart it; its health answer does not show this.",
)
def test_loop_recent_success(target: Loop, obs: ProgressSample) -> None:
    """A successful cycle was recorded at most ``maxAgeSeconds`` ago."""
    age = obs.last_success_age_s
    ok = age is not None and age <= target.max_age_s
    expect(ok,
           f"loop {target.name}: last successful cycle "
           f"{'none recorded (since its last start)' if age is None else f'{age:.0f}s ago'} (bound {target.max_age_s}s) in {obs.source}",
           reason="loop_no_success" if age is None else "loop_stalled",
           observed=_seen(obs, ok, {"lastSuccessAgeSeconds": f"<= {target.max_age_s}"}),
           expected={"lastSuccessAgeSeconds": f"<= {target.max_age_s}"})  # fmt: skip


@check(
    "progress.loop.failures_bounded",
    title="The loop's recent failed cycles are within the declared bound",
    targets=loops,
    observe=loop_progress,
    remediation="Loop {name} keeps failing: read its log for the failing step, fix it, and restart it.",
)
def test_loop_failures_bounded(target: Loop, obs: ProgressSample) -> None:
    """At most ``maxFailures`` failed cycles in the last ``windowSeconds``."""
    ok = obs.failures <= target.max_failures
    expect(ok,
           f"loop {target.name}: {obs.failures} failed cycle(s) in the last {target.window_s}s "
           f"(bound {target.max_failures}; {obs.successes} succeeded) in {obs.source}",
           reason="loop_failing", observed=_seen(obs, ok, {"failuresInWindow": f"<= {target.max_failures}"}),
           expected={"failuresInWindow": f"<= {target.max_failures}"})  # fmt: skip
