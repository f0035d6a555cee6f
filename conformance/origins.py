"""Where a profile value came from, so a bad value is blamed on the argument that gave it; and
what counts as a network address."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

_VAR = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class _Variable(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def origin(self) -> str: ...
    @property
    def default(self) -> str: ...
    @property
    def env(self) -> str | None: ...


def sources(variables: Sequence[_Variable]) -> dict[str, str]:
    """For each variable set by ``--set`` or the environment, or whose default is built from one, where it was set:
    ``<argument --set NAME>`` or ``<environment VAR>``."""
    out: dict[str, str] = {}
    for var in variables:
        if var.origin == "argument":
            out[var.name] = f"<argument --set {var.name}>"
        elif var.origin == "environment":
            out[var.name] = f"<environment {var.env}>"
        else:
            inherited = [out[ref] for ref in _VAR.findall(var.default) if ref in out]
            if inherited:
                out[var.name] = inherited[0]
    return out


def blamed(raw: object, given: Mapping[str, str]) -> str | None:
    """The place that set a variable ``raw`` refers to, if one of them was given rather than defaulted."""
    if not isinstance(raw, str):
        return None
    found: Iterable[str] = (given[name] for name in _VAR.findall(raw) if name in given)
    return next(iter(found), None)


def is_address(text: str) -> bool:
    """An IPv4/IPv6 address or an RFC 1123 host name (whose last label is not all digits: ``999.1.1.1`` is neither)."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        pass
    name = text[:-1] if text.endswith(".") else text
    labels = name.split(".")
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in labels) and not labels[-1].isdigit()
