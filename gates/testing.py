"""Helpers for testing deployments and faults with gates (used by the self-tests, usable by anyone)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from gates.cli import run


def run_cli(*argv: str) -> tuple[int, str, str]:
    """Run the ``gates`` CLI in-process with ``argv``; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def not_passing(out: Path) -> dict[str, str]:
    """Check instance id → status of every check that did not pass, across the reports under ``out/gates``."""
    found: dict[str, str] = {}
    for path in sorted((out / "gates").glob("*.json")):
        for check in json.loads(path.read_text())["checks"]:
            if not check["ok"]:
                found[check["id"]] = check["status"]
    return found
