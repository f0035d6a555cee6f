"""Resolve the probe specs a check declared into observations."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from conformance.errors import ProbeError


@dataclass(frozen=True, slots=True, kw_only=True)
class Tolerant:
    """Wraps a spec whose failure to observe is itself information: it resolves to the `ProbeError`."""

    spec: Any


def resolve(declared: Any, submit: Callable[[Any], Future[Any]], *, wait: bool) -> Any:
    """Submit every spec in ``declared`` (a spec, `Tolerant`, tuple or dict of them).

    With ``wait``, return the same shape with observations in place of specs; a plain spec
    whose probe failed raises its `ProbeError`, a `Tolerant` one yields the error object.
    """
    if isinstance(declared, tuple):
        return tuple(resolve(d, submit, wait=wait) for d in declared)
    if isinstance(declared, dict):
        return {k: resolve(v, submit, wait=wait) for k, v in declared.items()}
    if isinstance(declared, Tolerant):
        future = submit(declared.spec)
        if not wait:
            return None
        try:
            return future.result()
        except ProbeError as exc:
            return exc
    future = submit(declared)
    return future.result() if wait else None
