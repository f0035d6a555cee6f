"""Helpers for testing deployments and faults with gates (used by the self-tests, usable by anyone)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from gates.cli import run
from gates.evaluate import NOT_ALLOWED
from gates.runner import read_results


def run_cli(*argv: str) -> tuple[int, str, str]:
    """Run the ``gates`` CLI in-process with ``argv``; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def not_passing(out: Path) -> dict[str, str]:
    """Check instance id → status of every check that did not pass, across the reports under ``out/gates``.

    Roll-up reports (which repeat their components), and drills and paying checks that were not allowed to
    run, are left out. Reports in a foreign shape (see `gates.formats`) are mapped back to check instance ids; their
    status is that shape's (the upstream Nooterra reports know only pass and fail). A shape that names
    checks but not targets (``HostedBaselineEvidence.v1``) is resolved through the run's own results
    (``out/run/results.ndjson``), which also say whether a check failed or could not observe.
    """
    from gates import formats

    results = {i: str(r["outcome"]) for i, r in read_results(out / "run" / "results.ndjson").items()}
    found: dict[str, str] = {}
    for path in sorted((out / "gates").glob("*.json")):
        body = json.loads(path.read_text())
        if "components" in body:
            continue
        fmt = formats.for_report(body)
        if fmt is None:
            entries = {
                c["id"]: c["status"]
                for c in body["checks"]
                if not c["ok"] and c.get("failureCode") not in NOT_ALLOWED
            }
        else:
            entries = fmt.not_passing(body)
        for key, status in entries.items():
            if "[" in key:
                found[key] = status
                continue
            instances = {i: o for i, o in results.items() if i.split("[", 1)[0] == key and o != "pass"}
            found.update(instances or {key: status})
    return found


class Startable(Protocol):
    """A reference deployment (see ``fixtures.registry``): started with an optional fault, then stopped."""

    def up(self, state: Path, fault_id: str | None = None) -> list[str]:
        """Start; return the ``gates run`` arguments that certify it."""

    def down(self, state: Path) -> int:
        """Stop; return how many processes were stopped."""


def run_with_fault(
    reference: Startable,
    state: Path,
    fault_id: str,
    out: Path,
    *,
    allow_drills: bool = False,
    allow_spend_cents: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, str], str]:
    """Start ``reference`` with one fault, certify it into ``out`` (with drills and a spend if allowed, and
    ``environ`` set for the run: where secrets are read), stop it.

    Returns the exit code, the checks that did not pass (id → status) and the summary printed.
    """
    reference.down(state)
    args = reference.up(state, fault_id)
    drills = ["--allow-drills"] if allow_drills else []
    spend = [] if allow_spend_cents is None else ["--allow-spend-cents", str(allow_spend_cents)]
    saved = {name: os.environ.get(name) for name in environ or {}}
    os.environ.update(environ or {})
    try:
        code, stdout, _ = run_cli("run", *args, *drills, *spend, "--out", str(out), "--quiet")
    finally:
        reference.down(state)
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
    return code, not_passing(out), stdout
