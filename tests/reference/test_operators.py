"""For operators and release managers, on the real reference: waivers and `gates diff` between runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fixtures.registry import REFERENCES
from fixtures.state import default_state_dir
from gates import report as reports
from gates.runner import read_results
from gates.testing import run_cli

REF = REFERENCES["oroboros"]
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
FAULT = next(f for f in REF.faults if f.id == "caddy-bind-all")
WAIVED = FAULT.trips[0]  # topology.listen.bind_exact[reverse-proxy]


@dataclass(frozen=True)
class Runs:
    """A healthy run's output, and the `gates run` arguments of the same reference with the fault."""

    healthy: Path
    faulty: Path
    args: list[str]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    state = default_state_dir(f"selftest-{WORKER}-operators")
    base = tmp_path_factory.mktemp("operators")
    REF.down(state)
    try:
        code, stdout, _ = run_cli("run", *REF.up(state), "--out", str(base / "healthy"), "--quiet")
        assert code == 0, stdout
        REF.down(state)
        args = REF.up(state, FAULT.id)
        code, stdout, _ = run_cli("run", *args, "--out", str(base / "faulty"), "--quiet")
        assert code == 1, stdout
        yield Runs(healthy=base / "healthy", faulty=base / "faulty", args=args)
    finally:
        REF.down(state)


def waivers_file(path: Path, *entries: tuple[str, str]) -> Path:
    """A waivers file with one waiver per (check, expires)."""
    lines = ["schemaVersion: gates.waivers/v1", "waivers:"]
    for check, expires in entries:
        lines += [
            f"  - check: {check}",
            "    reason: Caddy binds every address until the Caddyfile fix ships",
            "    approver: ops-lead@example.com",
            "    created: 2000-01-01",
            f"    expires: {expires}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


class TestWaivers:
    """A waiver for exactly the failing checks passes the run, lapses loudly, and idles loudly."""

    def test_live_waiver_passes_with_the_waived_checks_listed(self, runs: Runs, tmp_path: Path) -> None:
        path = waivers_file(tmp_path / "w.yaml", *((t, "2999-12-31") for t in FAULT.trips))
        out = tmp_path / "out"
        code, stdout, _ = run_cli("run", *runs.args, "--waivers", str(path), "--out", str(out), "--quiet")
        assert code == 0, stdout
        assert f"WAIVED   {WAIVED}" in stdout
        assert "approved by ops-lead@example.com, expires 2999-12-31" in stdout
        body = reports.verify(out / "gates" / "runtime-topology.json")
        assert body["verdict"]["status"] == "pass"
        assert body["verdict"]["waivedChecks"] == len(FAULT.trips)
        assert sorted(c["id"] for c in body["checks"] if c["status"] == "waived") == sorted(FAULT.trips)
        assert [w["state"] for w in body["waivers"]] == ["applied"] * len(FAULT.trips)
        results = read_results(out / "run" / "results.ndjson", validate=True)
        assert results[WAIVED]["outcome"] == "waived"
        assert results[WAIVED]["waiver"]["expires"] == "2999-12-31"
        assert (
            'type="pytest.xfail" message="waived by ops-lead@example.com' in (out / "junit.xml").read_text()
        )

    def test_expired_waiver_fails_again_and_says_why(self, runs: Runs, tmp_path: Path) -> None:
        path = waivers_file(tmp_path / "w.yaml", *((t, "2000-01-02") for t in FAULT.trips))
        out = tmp_path / "out"
        code, stdout, _ = run_cli("run", *runs.args, "--waivers", str(path), "--out", str(out), "--quiet")
        assert code == 1, stdout
        assert "waiver expired on 2000-01-02" in stdout
        assert f"EXPIRED  {WAIVED}" in stdout
        body = reports.verify(out / "gates" / "runtime-topology.json")
        assert body["verdict"]["status"] == "fail"
        issue = next(b for b in body["blockingIssues"] if b["checkId"] == WAIVED)
        assert issue["expiredWaiver"]["expires"] == "2000-01-02"
        assert body["waivers"][0]["state"] == "expired"

    def test_waiver_matching_nothing_is_reported(self, runs: Runs, tmp_path: Path) -> None:
        path = waivers_file(
            tmp_path / "w.yaml",
            ("config.env.values_exact[no-such-file]", "2999-12-31"),
            ("health.redis.*", "2999-12-31"),
        )
        out = tmp_path / "out"
        code, stdout, _ = run_cli("run", *runs.args, "--waivers", str(path), "--out", str(out), "--quiet")
        assert code == 1, stdout
        assert "STALE    config.env.values_exact[no-such-file]" in stdout
        assert "matches no check of this run" in stdout
        assert "STALE    health.redis.*" in stdout
        body = reports.verify(out / "gates" / "runtime-health.json")
        assert [(w["state"], w["finding"]) for w in body["waivers"]] == [
            ("stale", "matches_no_check"),
            ("stale", "check_passes"),
        ]


class TestDiff:
    """`gates diff` between a healthy and a faulty run names exactly the fault's checks."""

    def test_healthy_to_faulty_lists_the_fault_as_new_failures(self, runs: Runs) -> None:
        code, stdout, _ = run_cli("diff", "--json", str(runs.healthy), str(runs.faulty))
        assert code == 1, stdout
        found = json.loads(stdout)
        assert sorted(r["check"] for r in found["newFailures"]) == sorted(FAULT.trips)
        assert found["fixed"] == found["missingInNew"] == found["missingInOld"] == []
        assert {r["check"] for r in found["evidenceChanged"]} >= set(FAULT.trips)

    def test_faulty_to_healthy_is_fixed(self, runs: Runs) -> None:
        code, stdout, _ = run_cli("diff", str(runs.faulty), str(runs.healthy))
        assert code == 0, stdout
        assert f"FIXED     runtime-topology  {WAIVED}" in stdout
        assert "no regression" in stdout

    def test_a_check_missing_from_one_side_is_reported(self, runs: Runs) -> None:
        one = runs.healthy / "gates" / "runtime-topology.json"
        code, stdout, _ = run_cli("diff", "--json", str(runs.healthy), str(one))
        assert code == 1, stdout
        found = json.loads(stdout)
        assert found["missingInNew"]
        assert {r["gate"] for r in found["missingInNew"]} == {"runtime-health"}

    def test_bad_input_exits_2(self, runs: Runs, tmp_path: Path) -> None:
        edited = tmp_path / "edited.json"
        body = json.loads((runs.healthy / "gates" / "runtime-topology.json").read_text())
        body["verdict"]["status"] = "fail"
        edited.write_text(json.dumps(body))
        code, _, err = run_cli("diff", str(runs.healthy), str(edited))
        assert code == 2
        assert str(edited) in err
        code, _, err = run_cli("diff", str(runs.healthy), str(tmp_path / "nothing"))
        assert code == 2


CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0",
)  # fmt: skip


def open_page(page: Path, fragment: str, profile_dir: Path) -> tuple[str, list[str]]:
    """The DOM of ``page`` after its script ran in headless Chromium, and the console messages it logged."""
    browser = shutil.which("chromium")
    if browser is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (fixtures/bootstrap/system.sh installs it)")
        pytest.skip("chromium is not installed")
    done = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "--dump-dom", f"{page.as_uri()}{fragment}"],
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def shown(dom: str) -> str:
    found = re.search(r'<span id="shown">([^<]*)</span>', dom)
    assert found is not None, "the filter script did not run"
    return found.group(1)


class TestDashboard:
    """report.html, opened in headless Chromium, shows the gates, what blocks, and what was waived."""

    def static_page(self, page: Path) -> str:
        html = page.read_text()
        assert re.search(r'(src|href)="(https?:)?//', html) is None, (
            "the dashboard loads nothing from the network"
        )
        assert "Check catalogue" in html
        assert "<script>" in html
        return html

    def test_passing_run(self, runs: Runs, tmp_path: Path) -> None:
        self.static_page(runs.healthy / "report.html")
        dom, console = open_page(runs.healthy / "report.html", "", tmp_path / "chromium")
        assert console == []
        assert 'data-script="ok"' in dom
        assert 'id="gate-runtime-health" data-verdict="pass"' in dom
        assert 'id="gate-runtime-topology" data-verdict="pass"' in dom
        assert "Blocking issues (0)" in dom
        total = dom.count("<tr data-status=")
        assert shown(dom) == f"{total} of {total} checks shown"
        assert (runs.healthy / "pytest-report.html").is_file()

    def test_failing_run(self, runs: Runs, tmp_path: Path) -> None:
        self.static_page(runs.faulty / "report.html")
        dom, console = open_page(runs.faulty / "report.html", "#status=fail", tmp_path / "chromium")
        assert console == []
        assert 'id="gate-runtime-topology" data-verdict="fail"' in dom
        assert 'id="gate-runtime-health" data-verdict="pass"' in dom
        blocking = re.findall(r'<div class="issue" data-check="([^"]+)"', dom)
        assert sorted(blocking) == sorted(FAULT.trips)
        assert "bind_address_mismatch" in dom
        assert "remediation" in dom
        assert shown(dom).startswith(f"{len(FAULT.trips)} of ")

    def test_waived_run(self, runs: Runs, tmp_path: Path) -> None:
        path = waivers_file(tmp_path / "w.yaml", *((t, "2999-12-31") for t in FAULT.trips))
        out = tmp_path / "out"
        code, stdout, _ = run_cli("run", *runs.args, "--waivers", str(path), "--out", str(out), "--quiet")
        assert code == 0, stdout
        self.static_page(out / "report.html")
        dom, console = open_page(out / "report.html", "#status=waived", tmp_path / "chromium")
        assert console == []
        assert 'id="gate-runtime-topology" data-verdict="pass"' in dom
        assert "Blocking issues (0)" in dom
        waived = re.findall(r'<div class="issue waived" data-check="([^"]+)"', dom)
        assert sorted(waived) == sorted(FAULT.trips)
        assert "ops-lead@example.com" in dom
        assert '<tr data-state="applied">' in dom
        assert shown(dom).startswith(f"{len(FAULT.trips)} of ")
