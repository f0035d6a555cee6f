"""Remediation hints are rendered for the target: no empty systemctl hints for services without a unit."""

from __future__ import annotations

from dataclasses import dataclass

from conformance.plugin import _render

TEMPLATE = "Nothing accepts connections on {bind}:{port}: start {name} (systemctl start {unit}) and check its journal."


@dataclass
class Target:
    name: str
    bind: str
    port: int
    unit: str | None


def test_unit_hint_kept_when_a_unit_is_declared() -> None:
    """The systemctl hint names the unit."""
    text = _render(TEMPLATE, Target(name="api", bind="127.0.0.1", port=8000, unit="ouroboros-api.service"))
    assert "(systemctl start ouroboros-api.service)" in text


def test_unit_hint_dropped_without_a_unit() -> None:
    """A service no unit runs gets the hint without the empty systemctl command."""
    text = _render(TEMPLATE, Target(name="x402-gateway", bind="127.0.0.1", port=8402, unit=None))
    assert text == "Nothing accepts connections on 127.0.0.1:8402: start x402-gateway and check its journal."
