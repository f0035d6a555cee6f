"""Assertions shared by the checks that read ``systemctl show``."""

from __future__ import annotations

from conformance.checks import expect
from conformance.probes.systemd import UnitInfo


def expect_loaded(info: UnitInfo, *, kind: str) -> None:
    """The unit is installed (systemd found its file)."""
    __tracebackhide__ = True
    expect(info.exists, f"{kind} {info.unit} is not installed (LoadState={info.get('LoadState')!r})",
           reason=f"{kind}_missing", observed=info.get("LoadState"), expected="loaded")  # fmt: skip


def expect_state(info: UnitInfo, prop: str, want: str, *, kind: str, reason: str) -> None:
    """The unit is installed and ``prop`` (ActiveState, UnitFileState, ...) has the value ``want``."""
    __tracebackhide__ = True
    expect_loaded(info, kind=kind)
    got = info.get(prop)
    detail = f"/{info.get('SubState')}" if prop == "ActiveState" and info.get("SubState") else ""
    expect(got == want, f"{kind} {info.unit} is {got or 'not ' + want}{detail}; expected {want}",
           reason=reason, observed=got, expected=want)  # fmt: skip
