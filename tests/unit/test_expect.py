"""`gates demo --expect FILE`: a certification compared with a committed verdict table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.errors import ConfigError
from gates import expect
from gates.gate import load_gate
from gates.testing import run_cli

ROOT = Path(__file__).resolve().parents[2]
NOOTERRA = ROOT / "tests/upstream/nooterra_upstream_verdicts.yaml"
OROBOROS = ROOT / "tests/upstream/oroboros_upstream_verdicts.yaml"


def _write(out: Path, gate: str, body: dict[str, object]) -> None:
    path = out / "gates" / load_gate(gate).report
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))


class TestTables:
    def test_the_committed_tables_load(self) -> None:
        """Both shapes: the flat Nooterra table (with races) and the per-gate Oroboros table."""
        flat = expect.load(NOOTERRA)
        assert not flat.per_gate
        assert flat.gates["receipt-verification"] == {"fail", "incomplete"}  # and a listed race
        assert flat.checks["x402.receipt.quote_signature[exa-search]"] == {"fail", "error"}  # a listed race
        assert flat.checks["nooterra.rate_limit.enforced[api]"] == {"pass", "error"}
        nested = expect.load(OROBOROS)
        assert nested.per_gate
        assert nested.gates["runtime-topology"] == {"fail"}
        assert nested.checks["topology.listen.bind_exact[reverse-proxy]"] == {"fail"}

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("- a list\n", "no 'gates' mapping"),
            ("gates: {nooterra-live: green}\nchecks: {}\n", "'green' is not one of"),
            ("gates: {no-such-gate: pass}\nchecks: {}\n", "gates.no-such-gate"),
            ('gates: {nooterra-live: pass}\nchecks: {}\nraces: {r: {also: [error], checks: ["x[y]"]}}\n',
             "x[y] is not a listed check"),
            ("gates: {runtime-health: {checks: {}}}\n", "expected {verdict, checks}"),
        ],
    )  # fmt: skip
    def test_a_bad_table_is_a_config_error_naming_file_and_place(
        self, tmp_path: Path, text: str, message: str
    ) -> None:
        """Every defect of the table is exit 2 with the file and line, never a traceback."""
        table = tmp_path / "table.yaml"
        table.write_text(text)
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")) as raised:
            expect.load(table)
        assert raised.value.source == str(table)
        assert raised.value.location

    def test_demo_refuses_a_bad_table_before_starting_anything(self, tmp_path: Path) -> None:
        """`gates demo --expect` with a bad table exits 2 and names the file; no reference was started."""
        table = tmp_path / "table.yaml"
        table.write_text("gates: {nooterra-live: green}\nchecks: {}\n")
        code, _, err = run_cli(
            "demo", "nooterra-upstream", "--expect", str(table), "--out", str(tmp_path / "o")
        )
        assert code == 2
        assert str(table) in err
        assert "starting reference" not in err


class TestComparison:
    def test_flat_table_observed_from_results_and_reports(self, tmp_path: Path) -> None:
        """Check outcomes from results.ndjson (a torn last line ignored), a required check without an instance
        from the report's blocking issues, gate verdicts from each gate's report."""
        table = tmp_path / "t.yaml"
        table.write_text(
            "gates: {nooterra-live: fail, hosted-baseline: pass}\n"
            "checks:\n  a[x]: {expected: pass}\n  b[x]: {expected: fail}\n  c: {expected: not_run}\n"
            'races: {slow: {also: [error], checks: ["a[x]"], gates: {nooterra-live: [incomplete]}}}\n'
        )
        want = expect.load(table)
        (tmp_path / "out" / "run").mkdir(parents=True)
        rows = [{"id": "a[x]", "outcome": "error"}, {"id": "b[x]", "outcome": "fail"}]
        (tmp_path / "out" / "run" / "results.ndjson").write_text(
            "".join(json.dumps(r) + "\n" for r in rows) + '{"id": "torn'
        )
        _write(tmp_path / "out", "nooterra-live", {"verdict": {"status": "incomplete"},
               "blockingIssues": [{"checkId": "c", "status": "not_run"}, {"checkId": "gate.verdict.pass[x]"}]})  # fmt: skip
        _write(tmp_path / "out", "hosted-baseline", {"status": "pass"})
        gates, checks = expect.observe(tmp_path / "out", want)
        assert gates == {"nooterra-live": "incomplete", "hosted-baseline": "pass"}
        assert checks == {"a[x]": "error", "b[x]": "fail", "c": "not_run"}
        assert expect.differences(want, gates, checks) == []

    def test_every_kind_of_difference_is_listed(self, tmp_path: Path) -> None:
        """A verdict the table does not allow, a missing report, a missing check and an unlisted check."""
        table = tmp_path / "t.yaml"
        table.write_text(
            "gates:\n  runtime-health:\n    verdict: pass\n    checks:\n      a[x]: pass\n      b[x]: {status: fail, upstream: f:1}\n"
            "  runtime-topology: {verdict: pass, checks: {}}\n"
        )
        want = expect.load(table)
        _write(tmp_path, "runtime-health", {"verdict": {"status": "fail"},
               "checks": [{"id": "a[x]", "status": "fail"}, {"id": "z[x]", "status": "pass"}]})  # fmt: skip
        gates, checks = expect.observe(tmp_path, want)
        assert expect.differences(want, gates, checks) == [
            "gate runtime-health: fail (table: pass)",
            "gate runtime-topology: no report was written (table: pass)",
            "a[x]: fail (table: pass)",
            "b[x]: not in the run (table: fail)",
            "z[x]: pass (not in the table)",
        ]
