"""Host backends: how commands and file reads reach the target (pytest-testinfra)."""

from __future__ import annotations

from typing import Any

import testinfra

from conformance.errors import ConfigError


def make_host(target: str) -> Any:
    """Return a pytest-testinfra host for ``--target`` (``local`` or a testinfra backend URL)."""
    if target in ("local", "local://"):
        return testinfra.get_host("local://")
    raise ConfigError(
        f"unsupported target {target!r}: this version certifies the host it runs on; use --target local",
        source="<argument --target>",
    )
