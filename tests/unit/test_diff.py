"""`gates diff`: the pure comparison of two sides, each check in the categories it falls into."""

from __future__ import annotations

from gates.diff import Observation, Side, compare, regressed


def side(**checks: tuple[str, str]) -> Side:
    return {("g", k.replace("_", ".")): Observation(status=s, evidence=e) for k, (s, e) in checks.items()}


def categorised(old: Side, new: Side) -> dict[str, list[str]]:
    return {name: [r["check"] for r in rows] for name, rows in compare(old, new).items() if rows}


def test_every_category() -> None:
    old = side(
        a=("pass", "1"), b=("fail", "1"), c=("fail", "1"), d=("waived", "1"), e=("pass", "1"), f=("pass", "1")
    )
    new = side(
        a=("fail", "2"),
        b=("pass", "1"),
        c=("error", "1"),
        d=("fail", "1"),
        e=("waived", "1"),
        g=("fail", "1"),
    )
    assert categorised(old, new) == {
        "newFailures": ["a", "d", "g"],
        "missingInNew": ["f"],
        "lapsedWaivers": ["d"],
        "newlyWaived": ["e"],
        "fixed": ["b"],
        "stillFailing": ["c"],
        "missingInOld": ["g"],
        "evidenceChanged": ["a"],
    }
    assert regressed(compare(old, new))


def test_a_check_missing_now_is_a_regression() -> None:
    assert regressed(compare(side(a=("pass", "1")), {}))


def test_nothing_changed() -> None:
    same = side(a=("pass", "1"), b=("waived", "1"))
    assert categorised(same, same) == {}
    assert not regressed(compare(same, same))


def test_a_waived_failure_is_no_regression() -> None:
    assert not regressed(compare(side(a=("fail", "1")), side(a=("waived", "1"))))
