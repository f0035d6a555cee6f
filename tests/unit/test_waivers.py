"""Waivers: the strict file loader, matching, and what a waiver does (and never does) to a verdict."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

import pytest

from conformance import _schemas
from conformance.checks import CheckInstance, load_suite
from conformance.errors import ConfigError
from conformance.profile import load_profile
from conformance.redact import Redactor
from conformance.waivers import Waiver, load_waivers
from gates import report as reports
from gates.evaluate import Evaluation, evaluate, waiver_findings
from gates.gate import Expansion, Gate, Requirement
from gates.summary import print_summary, print_waivers

CHECK = "topology.listen.bind_exact"
TODAY = dt.date(2026, 12, 6)
HEADER = "schemaVersion: gates.waivers/v1\nwaivers:\n"


def entry(check: str = f"{CHECK}[reverse-proxy]", *, expires: str = "2027-01-31", **over: str) -> str:
    fields = {
        "check": check,
        "reason": "Caddy binds *:8088 until the Caddyfile fix ships",
        "approver": "ops-lead@example.com",
        "created": "2026-12-01",
        "expires": expires,
        **over,
    }
    lines = [f"    {k}: {v}" for k, v in fields.items() if v != "-"]
    return "  - " + "\n".join(lines)[4:] + "\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "waivers.yaml"
    path.write_text(text)
    return path


def waiver(check: str, *, expires: dt.date = dt.date(2027, 1, 31)) -> Waiver:
    return Waiver(
        check=check,
        reason="accepted",
        approver="ops@example.com",
        created=dt.date(2026, 12, 1),
        expires=expires,
    )


class TestLoad:
    """A waivers file is read strictly; every problem names the file and line."""

    def test_valid_file(self, tmp_path: Path) -> None:
        """The issue's example loads, dates as calendar days."""
        found = load_waivers(write(tmp_path, HEADER + entry()), load_suite())
        assert found[0].check == f"{CHECK}[reverse-proxy]"
        assert found[0].expires == dt.date(2027, 1, 31)
        assert found[0].to_json()["created"] == "2026-12-01"

    @pytest.mark.parametrize(
        ("text", "line", "words"),
        [
            (HEADER + entry(approver="-"), "line 3", "'approver' is a required property"),
            (HEADER + entry("topology.listen.no_such_check[api]"), "line 3", "unknown check id"),
            (HEADER + entry("nosuch.*"), "line 3", "unknown check id"),
            (HEADER + entry(expires="2027-02-30"), "line 7", "day is out of range"),
            (HEADER + entry(expires="'31/01/2027'"), "line 7", "does not match"),
            (HEADER + entry(expires="2026-11-01"), "line 7", "before created"),
            (HEADER + entry() + "  - check: [unclosed\n", "line", "invalid YAML"),
            ("schemaVersion: gates.waivers/v2\nwaivers: []\n", "line 1", "gates.waivers/v1"),
            ("", "line 1", "empty"),
        ],
        ids=[
            "missing-field",
            "unknown-id",
            "unknown-prefix",
            "no-such-day",
            "not-a-date",
            "reversed",
            "yaml",
            "version",
            "empty",
        ],
    )
    def test_bad_file_names_file_and_line(self, tmp_path: Path, text: str, line: str, words: str) -> None:
        """Malformed file, unknown check id, missing field, unparseable date: a ConfigError with the line."""
        path = write(tmp_path, text)
        with pytest.raises(ConfigError) as info:
            load_waivers(path, load_suite())
        rendered = info.value.render()
        assert str(path) in rendered
        assert line in rendered
        assert words in rendered

    def test_cli_exits_2_naming_the_line(self, tmp_path: Path) -> None:
        """`gates run --waivers BAD` is a usage error before anything is probed."""
        from gates.testing import run_cli

        path = write(tmp_path, HEADER + entry("topology.listen.nope"))
        code, _, err = run_cli(
            "run", "--profile", "oroboros", "--waivers", str(path), "--out", str(tmp_path / "o")
        )
        assert code == 2
        assert f"{path}: line 3" in err


class TestMatch:
    """An id covers every target, ``id[target]`` one, a trailing ``*`` a prefix."""

    def test_patterns(self) -> None:
        assert waiver(CHECK).covers(f"{CHECK}[api]")
        assert not waiver(CHECK).covers(f"{CHECK}_more[api]")
        assert waiver(f"{CHECK}[api]").covers(f"{CHECK}[api]")
        assert not waiver(f"{CHECK}[api]").covers(f"{CHECK}[api-preview-1]")
        assert waiver("topology.listen.*").covers(f"{CHECK}[api]")
        assert waiver(f"{CHECK}[api*").covers(f"{CHECK}[api-preview-1]")
        assert not waiver("health.*").covers(f"{CHECK}[api]")

    def test_live_through_its_expiry_day(self) -> None:
        assert waiver(CHECK, expires=TODAY).live(TODAY)
        assert not waiver(CHECK, expires=TODAY - dt.timedelta(days=1)).live(TODAY)


def gate() -> Gate:
    return Gate(
        name="runtime-topology",
        title="Topology",
        description="",
        report="runtime-topology.json",
        source="<test>",
        sha256="0" * 64,
        requires=(Requirement(check=CHECK, targets=None, optional=False),),
    )


def decide(outcomes: dict[str, str], waivers: list[Waiver] | None) -> Evaluation:
    exp = Expansion(
        instances=tuple(CheckInstance(id=f"{CHECK}[{t}]", check=CHECK, target=t) for t in outcomes),
        unmatched=(),
    )
    results: dict[str, dict[str, Any]] = {
        f"{CHECK}[{t}]": {"outcome": o, "message": f"it was {o}", "reasonCode": None if o == "pass" else "x"}
        for t, o in outcomes.items()
    }
    return evaluate(gate(), exp, results, waivers=waivers, today=TODAY)


class TestVerdict:
    """A live waiver turns a covered failure into ``waived``; nothing else changes."""

    def test_live_waiver_passes_the_gate(self) -> None:
        ev = decide({"api": "pass", "reverse-proxy": "fail"}, [waiver(f"{CHECK}[reverse-proxy]")])
        assert ev.status == "pass"
        assert ev.blocking == []
        waived = [c for c in ev.checks if c["status"] == "waived"]
        assert [c["id"] for c in waived] == [f"{CHECK}[reverse-proxy]"]
        assert waived[0]["waiver"]["approver"] == "ops@example.com"
        assert waived[0]["failureCode"] == "x"
        assert ev.verdict["waivedChecks"] == 1
        assert ev.verdict["failedChecks"] == 0

    def test_expired_waiver_fails_and_says_why(self) -> None:
        lapsed = waiver(f"{CHECK}[reverse-proxy]", expires=dt.date(2026, 12, 5))
        ev = decide({"reverse-proxy": "fail"}, [lapsed])
        assert ev.status == "fail"
        assert ev.blocking[0]["expiredWaiver"]["expires"] == "2026-12-05"
        assert ev.checks[0]["expiredWaiver"] == lapsed.to_json()

    @pytest.mark.parametrize("outcome", ["error", "skip"])
    def test_never_for_could_not_observe(self, outcome: str) -> None:
        ev = decide({"reverse-proxy": outcome}, [waiver(CHECK)])
        assert ev.status == "incomplete"
        assert ev.checks[0]["status"] == outcome

    def test_never_for_not_run(self) -> None:
        exp = Expansion(instances=(CheckInstance(id=f"{CHECK}[x]", check=CHECK, target="x"),), unmatched=())
        ev = evaluate(gate(), exp, {}, waivers=[waiver(CHECK)], today=TODAY)
        assert ev.checks[0]["status"] == "not_run"
        assert ev.status == "incomplete"

    def test_a_waived_result_without_a_live_waiver_is_a_failure(self) -> None:
        """The evaluation decides: a result the check run waived counts as failing unless a waiver applies now."""
        assert decide({"a": "waived"}, []).status == "fail"
        assert decide({"a": "waived"}, None).status == "fail"

    def test_no_waivers_file_keeps_the_verdict_shape(self) -> None:
        assert "waivedChecks" not in decide({"a": "fail"}, None).verdict

    def test_findings(self) -> None:
        ws = [
            waiver(f"{CHECK}[bad]"),
            waiver(f"{CHECK}[good]"),
            waiver(f"{CHECK}[ghost]"),
            waiver(f"{CHECK}[err]"),
            waiver(f"{CHECK}[bad]", expires=dt.date(2026, 1, 1)),
        ]
        ev = decide({"bad": "fail", "good": "pass", "err": "error"}, ws)
        found = [(f["state"], f["finding"]) for f in waiver_findings(ws, [ev], TODAY)]
        assert found == [
            ("applied", None),
            ("stale", "check_passes"),
            ("stale", "matches_no_check"),
            ("stale", "covers_no_failure"),
            ("expired", None),
        ]
        out = io.StringIO()
        print_waivers(waiver_findings(ws, [ev], TODAY), out)
        text = out.getvalue()
        assert "EXPIRED" in text
        assert text.count("STALE") == 3


class TestReport:
    """The applied waivers are part of the report and of its artifactHash."""

    def test_waivers_enter_the_hash(self) -> None:
        profile = load_profile("oroboros", {})
        ws = [waiver(f"{CHECK}[reverse-proxy]")]
        ev = decide({"reverse-proxy": "fail"}, ws)
        findings = waiver_findings(ws, [ev], TODAY)
        args: dict[str, Any] = {"target": "local", "captured_at": None, "redactor": Redactor(())}
        body = reports.build(gate(), profile, ev, waivers=findings, **args)
        _schemas.validate(body, "gate-report", source="<test>")
        other = [{**findings[0], "waiver": {**findings[0]["waiver"], "approver": "someone-else"}}]
        assert (
            reports.build(gate(), profile, ev, waivers=other, **args)["artifactHash"] != body["artifactHash"]
        )
        assert reports.artifact_hash(body) == body["artifactHash"]


class TestSummary:
    """The console summary aligns its columns whatever a gate is called."""

    def test_columns_align_with_long_gate_names(self) -> None:
        rows = []
        for name in ("a", "self-host-upgrade-migration-with-a-very-long-name"):
            g = Gate(
                name=name,
                title="",
                description="",
                report=f"{name}.json",
                source="",
                sha256="0" * 64,
                requires=(),
            )
            rows.append((g, decide({"api": "pass"}, None), Path(f"out/{name}.json"), "0" * 64))
        out = io.StringIO()
        print_summary(rows, 1.0, out)
        lines = out.getvalue().splitlines()[:3]
        starts = {line.index(" PASS") if "PASS" in line else line.index(" verdict") for line in lines}
        assert len(starts) == 1, lines
        ends = {len(line.split("out/")[0]) if "out/" in line else line.index("report") for line in lines}
        assert len(ends) == 1, lines
