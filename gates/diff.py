"""`gates diff OLD NEW`: what changed between two certifications.

Each side is an output directory (its ``gates/*.json``) or one report. Every report is verified
(schema and artifactHash) first; a check is keyed by its gate and instance id, and its evidence by
the sha256 of the canonical JSON of what was observed. The comparison itself (`compare`) is pure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from conformance.canonical import canonical_hash
from conformance.errors import ConfigError

GOOD = ("pass", "waived")  # a waived failure blocks nothing
CATEGORIES = (
    ("newFailures", "NEW FAIL", "did not fail before (or was not there) and does not pass now"),
    ("missingInNew", "MISSING", "certified before, absent now"),
    ("lapsedWaivers", "LAPSED", "waived before, not waived now"),
    ("newlyWaived", "WAIVED", "waived now, not before"),
    ("fixed", "FIXED", "did not pass before, passes now"),
    ("stillFailing", "STILL", "did not pass before and still does not"),
    ("missingInOld", "ADDED", "certified now, absent before"),
    ("evidenceChanged", "EVIDENCE", "what was observed changed"),
)
REGRESSIONS = ("newFailures", "missingInNew")


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """One check of one side: its status and the hash of what it observed."""

    status: str
    evidence: str


Side = dict[tuple[str, str], Observation]


def _entries(body: Mapping[str, Any], label: str) -> Side:
    checks = body.get("checks")
    if not isinstance(checks, list):  # a shape without a check list: the report's own verdict
        from gates.report import status_of

        return {
            (label, "(report)"): Observation(
                status=status_of(body), evidence=canonical_hash(body.get("checks"))
            )
        }
    out: Side = {}
    for c in checks:
        detail = c.get("detail")
        observed = detail.get("observed") if isinstance(detail, dict) and "observed" in detail else detail
        status = str(c.get("status") or ("pass" if c.get("ok") else "fail"))
        out[(label, str(c["id"]))] = Observation(status=status, evidence=canonical_hash(observed))
    return out


def _label(body: Mapping[str, Any], path: Path) -> str:
    inputs = body.get("inputs")
    if isinstance(inputs, dict) and isinstance(inputs.get("gate"), str):
        return str(inputs["gate"])
    return path.stem


def load_side(path: Path) -> tuple[Side, list[str]]:
    """The checks of a directory's reports (or of one report), and the report files read."""
    from gates import report as reports

    if path.is_dir():
        files = sorted((path / "gates").glob("*.json")) or sorted(path.glob("*.json"))
        if not files:
            raise ConfigError("no gate reports here (looked for gates/*.json and *.json)", source=str(path))
    elif path.is_file():
        files = [path]
    else:
        raise ConfigError("no such report or directory", source=str(path))
    side: Side = {}
    for file in files:
        body = reports.verify(file)
        side.update(_entries(body, _label(body, file)))
    return side, [str(f) for f in files]


def compare(old: Side, new: Side) -> dict[str, list[dict[str, Any]]]:
    """Every check of either side in each category it falls into (see ``CATEGORIES``)."""
    out: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in CATEGORIES}
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        row = {
            "gate": key[0],
            "check": key[1],
            "old": before.status if before else None,
            "new": after.status if after else None,
        }
        if after is None:
            out["missingInNew"].append(row)
            continue
        if before is None:
            out["missingInOld"].append(row)
        if after.status not in GOOD and (before is None or before.status in GOOD):
            out["newFailures"].append(row)
        if before is None:
            continue
        if before.status == "waived" and after.status != "waived":
            out["lapsedWaivers"].append(row)
        if after.status == "waived" and before.status != "waived":
            out["newlyWaived"].append(row)
        if before.status != "pass" and after.status == "pass":
            out["fixed"].append(row)
        if before.status not in GOOD and after.status not in GOOD:
            out["stillFailing"].append(row)
        if before.evidence != after.evidence:
            out["evidenceChanged"].append(row)
    return out


def regressed(found: Mapping[str, list[dict[str, Any]]]) -> bool:
    """A check that newly does not pass, or that was certified before and is missing now."""
    return any(found[name] for name in REGRESSIONS)


def render(found: Mapping[str, list[dict[str, Any]]], out: IO[str]) -> None:
    """A table: one row per check and category, then the counts."""
    from gates.summary import table

    rows = [
        [tag, r["gate"], r["check"], r["old"] or "-", r["new"] or "-"]
        for name, tag, _ in CATEGORIES
        for r in found[name]
    ]
    header = (("change", "<"), ("gate", "<"), ("check", "<"), ("old", "<"), ("new", "<"))
    if rows:
        for line in table(header, rows):
            print(line, file=out)
        print("", file=out)
    counts = ", ".join(f"{len(found[name])} {tag.lower()}" for name, tag, _ in CATEGORIES)
    verdict = "REGRESSED" if regressed(found) else "no regression"
    print(f"{verdict}: {counts}", file=out)


def run_diff(old: Path, new: Path, *, as_json: bool, out: IO[str]) -> int:
    """Compare, print, and return 1 on a regression, else 0 (bad input raises `ConfigError`)."""
    old_side, old_files = load_side(old)
    new_side, new_files = load_side(new)
    found = compare(old_side, new_side)
    if as_json:
        doc = {
            "old": {"path": str(old), "reports": old_files},
            "new": {"path": str(new), "reports": new_files},
            "regressed": regressed(found),
            **found,
        }
        print(json.dumps(doc, indent=2), file=out)
    else:
        render(found, out)
    return 1 if regressed(found) else 0
