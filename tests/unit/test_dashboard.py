"""The gate dashboard's page, rendered without a browser: evidence links, escaping, roll-ups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gates import dashboard


def view(name: str, checks: list[dict[str, Any]], **over: Any) -> dashboard.GateView:
    fields: dict[str, Any] = {
        "name": name,
        "status": "fail",
        "verdict": {"totalChecks": len(checks)},
        "report": f"gates/{name}.json",
        "artifact_hash": "a" * 64,
        "upstream_shape": None,
        "rollup": False,
        "checks": checks,
        "blocking": [],
        **over,
    }
    return dashboard.GateView(**fields)


RUN = dashboard.Run(
    profile="nooterra",
    target="local",
    generated_at="2026-12-06T00:00:00.000Z",
    captured_at=None,
    exit_code=1,
    waivers=None,
)


def test_evidence_links(tmp_path: Path) -> None:
    """Upstream-shaped reports, paid-call bundles and drill snapshots are linked; text is escaped."""
    (tmp_path / "paid-call" / "x402gate_1").mkdir(parents=True)
    (tmp_path / "paid-call" / "x402gate_1" / "manifest.json").write_text("{}")
    paid = {
        "id": "x402.paid.settled[gateway]",
        "status": "pass",
        "detail": {"message": "ok", "observed": {"bundle": "paid-call/x402gate_1"}},
    }
    drill = {
        "id": "release.drill.restored[current]",
        "status": "fail",
        "failureCode": "drift",
        "detail": {
            "message": "<b>drift</b>",
            "observed": {"before": {"current": "r1"}, "after": {"current": "r2"}},
        },
    }
    gates = [
        view("serving-mode-boundary", [], upstream_shape="ServingModeBoundaryGateReport.v1", status="pass"),
        view("paid-call-e2e", [paid], status="pass"),
        view(
            "deploy-rollback",
            [drill],
            blocking=[
                {"checkId": drill["id"], "status": "fail", "failureCode": "drift", "reason": "<b>drift</b>"}
            ],
        ),
        view(
            "production-readiness",
            [{"id": "gate.verdict.pass[deploy-rollback]", "status": "fail"}],
            rollup=True,
        ),
    ]
    page = dashboard.render(RUN, gates, tmp_path)
    assert 'href="gates/serving-mode-boundary.json"' in page
    assert "ServingModeBoundaryGateReport.v1" in page
    assert 'href="paid-call/x402gate_1/manifest.json"' in page
    assert "drill evidence <code>release.drill.restored[current]</code>" in page
    assert "&quot;r2&quot;" in page
    assert "<b>drift</b>" not in page
    assert "Blocking issues (1)" in page  # the roll-up's repeated issues are not counted twice
    assert "gate.verdict.pass[deploy-rollback]" not in page.split('id="catalogue"')[1]
    assert 'id="gate-production-readiness" data-verdict="fail"' in page
