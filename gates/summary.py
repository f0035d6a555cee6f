"""The console summary of a run: one aligned row per gate, the blocking issues, the waivers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from gates.gate import Gate

SUMMARY_LIMIT = 25  # blocking issues printed; the reports list them all
COLUMNS = (
    ("gate", "<"),
    ("verdict", "<"),
    ("pass", ">"),
    ("fail", ">"),
    ("error", ">"),
    ("skip", ">"),
    ("not-run", ">"),
    ("waived", ">"),
    ("report", "<"),
)


def table(header: Sequence[tuple[str, str]], rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows padded to the widest cell of each column (``<`` left, ``>`` right aligned), two spaces
    apart; the last column is not padded."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, (h, _) in enumerate(header)]
    out = []
    for cells in [[h for h, _ in header], *rows]:
        parts = [
            cell if i == len(cells) - 1 else (cell.ljust(w) if align == "<" else cell.rjust(w))
            for i, (cell, w, (_, align)) in enumerate(zip(cells, widths, header, strict=True))
        ]
        out.append("  ".join(parts).rstrip())
    return out


def print_summary(rows: list[tuple[Gate, Any, Path, str]], elapsed: float, out: IO[str]) -> None:
    """Each gate's verdict and counts, then every blocking issue (a roll-up's once)."""
    cells = []
    for gate, ev, path, _ in rows:
        v = ev.verdict
        cells.append(
            [
                gate.name,
                str(v["status"]).upper(),
                *(
                    str(v[k])
                    for k in (
                        "passedChecks",
                        "failedChecks",
                        "erroredChecks",
                        "skippedChecks",
                        "notRunChecks",
                    )
                ),
                str(sum(1 for c in ev.checks if c["status"] == "waived")),
                str(path),
            ]
        )
    for line in table(COLUMNS, cells):
        print(line, file=out)
    # a roll-up repeats its components' issues in its report; the summary prints each once
    blocking = [(g.name, b) for g, ev, _, _ in rows if not g.rollup for b in ev.blocking]
    if blocking:
        print(f"\nblocking ({len(blocking)}):", file=out)
        for name, b in blocking[:SUMMARY_LIMIT]:
            print(f"  {b['status'].upper():<8} {b['checkId']}  [{name}]", file=out)
            print(f"           {b['failureCode']}: {b['reason']}", file=out)
            if b.get("remediation"):
                print(f"           fix: {b['remediation']}", file=out)
            lapsed = b.get("expiredWaiver")
            if lapsed:
                print(
                    f"           waiver expired on {lapsed['expires']} (approved by {lapsed['approver']}: "
                    f"{lapsed['reason']}); it no longer applies",
                    file=out,
                )
        if len(blocking) > SUMMARY_LIMIT:
            print(f"  ... and {len(blocking) - SUMMARY_LIMIT} more: see the reports", file=out)
    waived = [
        (g.name, c) for g, ev, _, _ in rows if not g.rollup for c in ev.checks if c["status"] == "waived"
    ]
    if waived:
        print(f"\nwaived ({len(waived)}, not blocking):", file=out)
        for name, c in waived:
            w = c["waiver"]
            print(f"  WAIVED   {c['id']}  [{name}]", file=out)
            print(f"           {c.get('failureCode')}: {c['detail']['message']}", file=out)
            print(
                f"           waiver: {w['reason']} (approved by {w['approver']}, expires {w['expires']})",
                file=out,
            )
        foreign = sorted(
            {g.name for g, ev, _, _ in rows if g.format != "gates" and ev.verdict.get("waivedChecks")}
        )
        if foreign:
            print(f"  note: the upstream-shaped reports of {', '.join(foreign)} keep upstream's shape, which has no "
                  "waivers: they still list these checks as failing", file=out)  # fmt: skip
    print(f"\n{len(rows)} gate(s) in {elapsed:.2f}s", file=out)


FINDINGS = {
    "matches_no_check": "matches no check of this run",
    "check_passes": "every check it covers passes now",
    "covers_no_failure": "covers only checks that errored or did not run (a waiver never changes those)",
}


def print_waivers(findings: list[dict[str, Any]], out: IO[str]) -> None:
    """The waivers that lapsed or idle: findings to clean up (the applied ones are listed above)."""
    lapsed = [f for f in findings if f["state"] != "applied"]
    if not lapsed:
        return
    print(f"\nwaiver findings ({len(lapsed)}):", file=out)
    for f in lapsed:
        w = f["waiver"]
        where = f"{w['check']} (approved by {w['approver']})"
        if f["state"] == "expired":
            print(f"  EXPIRED  {where}: expired on {w['expires']}, no longer applies", file=out)
        else:
            print(f"  STALE    {where}: {FINDINGS[f['finding']]}; remove it", file=out)
