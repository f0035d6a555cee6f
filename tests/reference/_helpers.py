"""Shared helpers of the end-to-end self-tests."""

from __future__ import annotations

import io
import json
from pathlib import Path

from gates.cli import run


def gates(*argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process and return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def not_ok(out: Path) -> dict[str, str]:
    """Instance id → status of every check that did not pass, across all reports in ``out``."""
    found: dict[str, str] = {}
    for path in sorted((out / "gates").glob("*.json")):
        for check in json.loads(path.read_text())["checks"]:
            if not check["ok"]:
                found[check["id"]] = check["status"]
    return found
