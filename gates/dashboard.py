"""``report.html``: the gate dashboard, one static file for whoever decides on a release.

Gate first: the run, each gate's verdict, the blocking issues with what was observed and
expected and how to fix it, the waived checks with their waivers, links to evidence, then the
full check catalogue. Nothing is loaded from the network and everything is readable without
JavaScript; with it, the catalogue can be filtered (also from the URL: ``#status=fail&q=text``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conformance.redact import Redactor
    from gates.evaluate import Evaluation
    from gates.gate import Gate

DRILL_PREFIXES = ("release.drill.", "release.deploy.", "release.rollback.", "upgrade.drill.")


@dataclass(frozen=True, slots=True, kw_only=True)
class GateView:
    """What the dashboard shows of one gate (every value already scrubbed of secrets)."""

    name: str
    status: str
    verdict: Mapping[str, Any]
    report: str  # path relative to the dashboard
    artifact_hash: str
    upstream_shape: str | None  # the foreign report shape, if the gate writes one
    rollup: bool
    checks: Sequence[Mapping[str, Any]]
    blocking: Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """The run the dashboard describes."""

    profile: str
    target: str
    generated_at: str
    captured_at: str | None
    exit_code: int
    waivers: Sequence[Mapping[str, Any]] | None


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em;color:#1b1f23;max-width:1400px}
h1{font-size:1.5em;margin:0 0 .3em}h2{font-size:1.15em;margin:1.6em 0 .5em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .5em;border-bottom:1px solid #eee;
vertical-align:top}th{background:#f6f8fa}code,pre{font:12px ui-monospace,monospace}pre{white-space:pre-wrap;
margin:.2em 0;max-height:20em;overflow:auto;background:#f6f8fa;padding:.4em}
.s{display:inline-block;padding:0 .5em;border-radius:3px;font-weight:600;font-size:12px}
.pass{background:#dafbe1;color:#116329}.fail{background:#ffebe9;color:#a40e26}.waived{background:#fff8c5;color:#7d4e00}
.incomplete,.error,.not_run,.skip{background:#eaeef2;color:#57606a}
dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1em}dt{font-weight:600}dd{margin:0}
.issue{border-left:4px solid #cf222e;padding:.3em .8em;margin:.6em 0;background:#fffafa}
.issue.waived{border-color:#bf8700;background:#fffdf0}#filters{margin:.5em 0}#filters input{width:24em}
"""

SCRIPT = """
(function () {
  var q = document.getElementById('q'), st = document.getElementById('st'), box = document.getElementById('filters');
  var rows = Array.prototype.slice.call(document.querySelectorAll('#catalogue tbody tr'));
  function apply() {
    var text = q.value.toLowerCase(), want = st.value, shown = 0;
    rows.forEach(function (r) {
      var ok = (!want || r.getAttribute('data-status') === want) && r.textContent.toLowerCase().indexOf(text) >= 0;
      r.hidden = !ok; if (ok) { shown += 1; }
    });
    document.getElementById('shown').textContent = shown + ' of ' + rows.length + ' checks shown';
  }
  var params = new URLSearchParams(location.hash.slice(1));
  q.value = params.get('q') || ''; st.value = params.get('status') || '';
  q.addEventListener('input', apply); st.addEventListener('change', apply);
  box.hidden = false; apply();
  document.body.setAttribute('data-script', 'ok');
})();
"""


def _badge(status: str) -> str:
    return f'<span class="s {escape(status)}">{escape(status.upper())}</span>'


def _json(value: Any) -> str:
    return f"<pre>{escape(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))}</pre>"


def _run(run: Run, gates: Sequence[GateView]) -> str:
    overall = {0: "pass", 1: "fail"}.get(run.exit_code, "incomplete")
    return (
        f"<h1>Gates: {_badge(overall)} <code>{escape(run.profile)}</code></h1><dl>"
        f"<dt>profile</dt><dd><code>{escape(run.profile)}</code></dd>"
        f"<dt>target</dt><dd><code>{escape(run.target)}</code></dd>"
        f"<dt>generated</dt><dd>{escape(run.generated_at)}</dd>"
        f"<dt>captured at</dt><dd>{escape(run.captured_at or '-')}</dd>"
        f"<dt>exit code</dt><dd>{run.exit_code}</dd>"
        f"<dt>gates</dt><dd>{len(gates)}</dd></dl>"
    )


def _gates(gates: Sequence[GateView]) -> str:
    rows = "".join(
        f'<tr id="gate-{escape(g.name)}" data-verdict="{escape(g.status)}"><td><code>{escape(g.name)}</code>'
        f"{' (roll-up)' if g.rollup else ''}</td><td>{_badge(g.status)}</td>"
        + "".join(
            f"<td>{int(g.verdict.get(k, 0))}</td>"
            for k in ("totalChecks", "passedChecks", "failedChecks", "erroredChecks", "notRunChecks")
        )
        + f"<td>{sum(1 for c in g.checks if c.get('status') == 'waived')}</td>"
        f'<td><a href="{escape(g.report)}">{escape(g.report)}</a></td><td><code>{escape(g.artifact_hash)}</code></td></tr>'
        for g in gates
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "gate",
            "verdict",
            "checks",
            "pass",
            "fail",
            "error",
            "not run",
            "waived",
            "report",
            "artifactHash",
        )
    )
    return f'<h2>Gates</h2><table id="gates"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _blocking(gates: Sequence[GateView]) -> str:
    parts = []
    for g in gates:
        if g.rollup:  # a roll-up repeats its components' issues
            continue
        by_id = {str(c.get("id")): c for c in g.checks}
        for b in g.blocking:
            detail = by_id.get(str(b.get("checkId")), {}).get("detail") or {}
            lapsed = b.get("expiredWaiver")
            parts.append(
                f'<div class="issue" data-check="{escape(str(b.get("checkId")))}">'
                f"{_badge(str(b.get('status')))} <code>{escape(str(b.get('checkId')))}</code> "
                f"in <code>{escape(g.name)}</code> &mdash; <code>{escape(str(b.get('failureCode')))}</code>"
                f"<p>{escape(str(b.get('reason') or ''))}</p><dl>"
                f"<dt>observed</dt><dd>{_json(detail.get('observed'))}</dd>"
                f"<dt>expected</dt><dd>{_json(detail.get('expected'))}</dd>"
                f"<dt>remediation</dt><dd>{escape(str(b.get('remediation') or '-'))}</dd>"
                + (
                    f"<dt>waiver</dt><dd>expired on {escape(lapsed['expires'])} (approved by "
                    f"{escape(lapsed['approver'])}: {escape(lapsed['reason'])}); it no longer applies</dd>"
                    if isinstance(lapsed, Mapping)
                    else ""
                )
                + "</dl></div>"
            )
    body = "".join(parts) or "<p>None: nothing blocks.</p>"
    count = sum(1 for g in gates if not g.rollup for _ in g.blocking)
    return f'<h2>Blocking issues ({count})</h2><div id="blocking">{body}</div>'


def _waived(gates: Sequence[GateView], run: Run) -> str:
    rows = "".join(
        f'<div class="issue waived" data-check="{escape(str(c["id"]))}">{_badge("waived")} '
        f"<code>{escape(str(c['id']))}</code> in <code>{escape(g.name)}</code> &mdash; "
        f"<code>{escape(str(c.get('failureCode')))}</code><p>{escape(str(c['detail'].get('message', '')))}</p><dl>"
        f"<dt>waiver</dt><dd>{escape(c['waiver']['reason'])}</dd>"
        f"<dt>approver</dt><dd>{escape(c['waiver']['approver'])}</dd>"
        f"<dt>created</dt><dd>{escape(c['waiver']['created'])}</dd>"
        f"<dt>expires</dt><dd>{escape(c['waiver']['expires'])}</dd>"
        f"<dt>observed</dt><dd>{_json(c['detail'].get('observed'))}</dd></dl></div>"
        for g in gates
        if not g.rollup
        for c in g.checks
        if c.get("status") == "waived" and isinstance(c.get("waiver"), Mapping)
    )
    out = f'<h2>Waived checks</h2><div id="waived">{rows or "<p>None.</p>"}</div>'
    if run.waivers is not None:
        items = "".join(
            f'<tr data-state="{escape(f["state"])}"><td><code>{escape(f["waiver"]["check"])}</code></td>'
            f"<td>{escape(f['state'])}</td><td>{escape(f.get('finding') or '')}</td>"
            f"<td>{escape(f['waiver']['approver'])}</td><td>{escape(f['waiver']['expires'])}</td>"
            f"<td>{escape(', '.join(f['checks']))}</td></tr>"
            for f in run.waivers
        )
        out += (
            '<h3>Waivers of this run</h3><table id="waivers"><thead><tr><th>waiver</th><th>state</th>'
            f"<th>finding</th><th>approver</th><th>expires</th><th>covers</th></tr></thead><tbody>{items}</tbody></table>"
        )
    return out


def _evidence(gates: Sequence[GateView], out_dir: Path) -> str:
    links: list[str] = []
    for g in gates:
        if g.upstream_shape:
            links.append(
                f"<li>upstream-shaped report <code>{escape(g.upstream_shape)}</code>: "
                f'<a href="{escape(g.report)}">{escape(g.report)}</a></li>'
            )
    bundles = sorted(
        {
            str(c["detail"]["observed"]["bundle"])
            for g in gates
            for c in g.checks
            if isinstance((c.get("detail") or {}).get("observed"), Mapping)
            and "bundle" in c["detail"]["observed"]
        }
    )
    for bundle in bundles:
        target = f"{bundle}/manifest.json" if (out_dir / bundle / "manifest.json").is_file() else bundle
        links.append(f'<li>paid-call bundle: <a href="{escape(target)}">{escape(bundle)}</a></li>')
    for g in gates:
        for c in g.checks:
            if str(c.get("id", "")).startswith(DRILL_PREFIXES) and c.get("status") not in ("not_run",):
                links.append(
                    f"<li>drill evidence <code>{escape(str(c['id']))}</code> ({escape(str(c.get('status')))}) in "
                    f'<a href="{escape(g.report)}">{escape(g.report)}</a>'
                    f"<details><summary>snapshot</summary>{_json((c.get('detail') or {}).get('observed'))}</details></li>"
                )
    links.append('<li>run log and raw results: <a href="run/results.ndjson">run/results.ndjson</a>, '
                 '<a href="run/pytest.log">run/pytest.log</a>, <a href="junit.xml">junit.xml</a>, '
                 '<a href="pytest-report.html">pytest-report.html</a></li>')  # fmt: skip
    return f'<h2>Evidence</h2><ul id="evidence">{"".join(links)}</ul>'


def _catalogue(gates: Sequence[GateView]) -> str:
    rows = "".join(
        f'<tr data-status="{escape(str(c.get("status")))}"><td><code>{escape(g.name)}</code></td>'
        f"<td><code>{escape(str(c.get('id')))}</code></td><td>{_badge(str(c.get('status')))}</td>"
        f"<td>{escape(str(c.get('failureCode') or ''))}</td>"
        f"<td>{escape(str((c.get('detail') or {}).get('message') or ''))}</td></tr>"
        for g in gates
        if not g.rollup
        for c in g.checks
    )
    options = "".join(
        f'<option value="{s}">{s or "any status"}</option>'
        for s in ("", "pass", "fail", "waived", "error", "skip", "not_run")
    )
    filters = (
        '<div id="filters" hidden><label>filter <input id="q" type="search" placeholder="check id, gate, message">'
        f'</label> <label>status <select id="st">{options}</select></label> <span id="shown"></span></div>'
    )
    return (
        f'<h2>Check catalogue</h2>{filters}<table id="catalogue"><thead><tr><th>gate</th><th>check</th>'
        f"<th>status</th><th>code</th><th>message</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def view_of(gate: Gate, evaluation: Evaluation, body: Mapping[str, Any], redactor: Redactor) -> GateView:
    """A gate as the dashboard shows it: from its report when in this engine's shape (already
    scrubbed), else from its evaluation, scrubbed here, with its upstream-shaped report linked."""
    ours = gate.format == "gates"
    checks = (
        body["checks"] if ours else [{**c, "detail": redactor.scrub(c["detail"])} for c in evaluation.checks]
    )
    blocking = (
        body["blockingIssues"]
        if ours
        else [{**b, "reason": redactor.text(b["reason"]), "remediation": redactor.scrub(b.get("remediation"))}
              for b in evaluation.blocking]
    )  # fmt: skip
    return GateView(
        name=gate.name,
        status=evaluation.status,
        verdict=evaluation.verdict,
        report=f"gates/{gate.report}",
        artifact_hash=str(body.get("artifactHash", "")),
        upstream_shape=None if ours else str(body.get("schemaVersion") or body.get("type") or gate.format),
        rollup=gate.rollup,
        checks=checks,
        blocking=blocking,
    )


def render(run: Run, gates: Sequence[GateView], out_dir: Path) -> str:
    """The whole page."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; img-src data:\">"
        f"<title>gates: {escape(run.profile)}</title><style>{CSS}</style></head><body>"
        + _run(run, gates)
        + _gates(gates)
        + _blocking(gates)
        + _waived(gates, run)
        + _evidence(gates, out_dir)
        + _catalogue(gates)
        + f"<script>{SCRIPT}</script></body></html>\n"
    )


def write(path: Path, run: Run, gates: Sequence[GateView]) -> None:
    """Write the dashboard to ``path`` (``<out>/report.html``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(run, gates, path.parent), encoding="utf-8")
