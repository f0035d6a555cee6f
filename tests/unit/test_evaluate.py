"""Unit tests for `gates.evaluate`: deciding a gate from check results, and the exit code."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.checks import CheckInstance
from gates.evaluate import Evaluation, evaluate, exit_code
from gates.gate import Expansion, Gate, Requirement

CHECK = "health.http.status_exact"


def make_gate(name: str = "sample-gate") -> Gate:
    """A gate requiring ``CHECK`` on every target."""
    return Gate(
        name=name,
        title="Sample",
        description="",
        report=f"{name}.json",
        source="<test>",
        sha256="0" * 64,
        requires=(Requirement(check=CHECK, targets=None, optional=False),),
    )


def expansion(*targets: str, unmatched: tuple[str, ...] = ()) -> Expansion:
    """An expansion with one ``CHECK`` instance per target."""
    return Expansion(
        instances=tuple(CheckInstance(id=f"{CHECK}[{t}]", check=CHECK, target=t) for t in targets),
        unmatched=unmatched,
    )


def result(outcome: str, **extra: Any) -> dict[str, Any]:
    """A recorded check result with ``outcome``."""
    return {
        "outcome": outcome,
        "title": "status",
        "severity": "critical",
        "message": f"it was {outcome}",
        **extra,
    }


def decide(outcomes: dict[str, str | None], *, unmatched: tuple[str, ...] = ()) -> Evaluation:
    """Evaluate the sample gate over targets whose outcome is given (None: no result recorded)."""
    results = {f"{CHECK}[{t}]": result(o) for t, o in outcomes.items() if o is not None}
    return evaluate(make_gate(), expansion(*outcomes, unmatched=unmatched), results)


class TestEvaluate:
    """`evaluate` turns check results into checks, blocking issues and a verdict."""

    def test_all_pass(self) -> None:
        """When every required instance passed, the gate passes with no blocking issues."""
        ev = decide({"a": "pass", "b": "pass"})
        assert ev.status == "pass"
        assert ev.verdict["ok"] is True
        assert ev.blocking == []
        assert all(c["ok"] and "failureCode" not in c for c in ev.checks)

    def test_one_fail_among_errors(self) -> None:
        """A single failure makes the gate fail even when other instances errored."""
        ev = decide({"a": "error", "b": "fail", "c": "error", "d": "pass"})
        assert ev.status == "fail"
        assert ev.verdict["ok"] is False
        assert ev.verdict["failedChecks"] == 1
        assert ev.verdict["erroredChecks"] == 2

    def test_error_only(self) -> None:
        """An error without any failure makes the gate incomplete."""
        ev = decide({"a": "pass", "b": "error"})
        assert ev.status == "incomplete"
        assert [b["status"] for b in ev.blocking] == ["error"]

    def test_skip(self) -> None:
        """A skipped instance makes the gate incomplete, not pass."""
        ev = decide({"a": "pass", "b": "skip"})
        assert ev.status == "incomplete"
        assert ev.verdict["skippedChecks"] == 1

    def test_missing_result(self) -> None:
        """An instance with no recorded result is not_run and makes the gate incomplete."""
        ev = decide({"a": "pass", "b": None})
        assert ev.status == "incomplete"
        entry = next(c for c in ev.checks if c["id"] == f"{CHECK}[b]")
        assert entry["status"] == "not_run"
        assert entry["failureCode"] == "not_run"
        assert entry["ok"] is False
        assert ev.verdict["notRunChecks"] == 1

    def test_no_instances(self) -> None:
        """A gate that requires nothing of the profile is incomplete, never pass."""
        ev = decide({})
        assert ev.status == "incomplete"
        assert ev.verdict["totalChecks"] == 0

    def test_unmatched_requirement(self) -> None:
        """A requirement with no target is a not_run blocking issue with failureCode no_target."""
        ev = decide({"a": "pass"}, unmatched=("health.redis.ping",))
        assert ev.status == "incomplete"
        assert len(ev.blocking) == 1
        issue = ev.blocking[0]
        assert issue["failureCode"] == "no_target"
        assert issue["status"] == "not_run"
        assert issue["id"] == "sample-gate:health.redis.ping"
        # counted exactly as it is listed: one more check, not run
        assert ev.verdict["totalChecks"] == 2
        assert ev.verdict["notRunChecks"] == 1
        assert [c["id"] for c in ev.checks if not c["ok"]] == ["health.redis.ping"]

    def test_requirement_needing_systemd(self) -> None:
        """A systemd check on a profile without a service manager says so instead of an empty 0/0 gate."""
        exp = Expansion(instances=(), unmatched=("schedule.timer.enabled",),
                        reasons=(("schedule.timer.enabled", "requires_systemd"),))  # fmt: skip
        ev = evaluate(make_gate(), exp, {})
        assert ev.status == "incomplete"
        assert ev.verdict["totalChecks"] == ev.verdict["notRunChecks"] == 1
        entry = ev.checks[0]
        assert entry["failureCode"] == "requires_systemd"
        assert "processManager: none" in entry["detail"]["message"]
        assert ev.blocking[0]["failureCode"] == "requires_systemd"

    def test_reason_code_becomes_failure_code(self) -> None:
        """A result's reasonCode is used as the failureCode of a non-passing check."""
        results = {f"{CHECK}[a]": result("error", reasonCode="probe_timeout")}
        ev = evaluate(make_gate(), expansion("a"), results)
        assert ev.checks[0]["failureCode"] == "probe_timeout"
        assert ev.blocking[0]["failureCode"] == "probe_timeout"
        assert ev.blocking[0]["reason"] == "it was error"

    def test_blocking_ids_sorted(self) -> None:
        """Blocking issue ids are '<gate>:<instance>' and sorted."""
        ev = decide({"zeta": "fail", "alpha": "error", "mid": "pass", "beta": None})
        ids = [b["id"] for b in ev.blocking]
        assert ids == sorted(ids)
        assert ids == [f"sample-gate:{CHECK}[{t}]" for t in ("alpha", "beta", "zeta")]
        assert all(b["checkId"] == b["id"].split(":", 1)[1] for b in ev.blocking)

    def test_counts_add_up(self) -> None:
        """The per-status counts add up to totalChecks."""
        ev = decide({"a": "pass", "b": "pass", "c": "fail", "d": "error", "e": "skip", "f": None})
        v = ev.verdict
        assert v["totalChecks"] == 6
        parts = ("passedChecks", "failedChecks", "erroredChecks", "skippedChecks", "notRunChecks")
        assert [v[k] for k in parts] == [2, 1, 1, 1, 1]
        assert sum(v[k] for k in parts) == v["totalChecks"]


class TestExitCode:
    """`exit_code` maps gate statuses to the process exit code."""

    @pytest.mark.parametrize(
        ("statuses", "code"),
        [
            ([], 3),
            (["pass", "pass"], 0),
            (["pass", "incomplete"], 3),
            (["incomplete", "fail"], 1),
            (["pass", "fail"], 1),
        ],
    )
    def test_exit_code(self, statuses: list[str], code: int) -> None:
        """No gates or any incomplete gives 3, any failure gives 1, all passed gives 0."""
        assert exit_code(statuses) == code
