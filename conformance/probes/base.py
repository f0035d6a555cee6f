"""The probe interface and the concurrent, memoizing prober.

A probe spec is a frozen, hashable dataclass that knows how to observe one thing
(``spec.observe(ctx)``). Specs never assert; they return an observation or raise a
`ProbeError`. The `Prober` runs specs on a thread pool and memoizes them, so every check
that needs the same observation shares one probe, and all probes of a run start at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from conformance.errors import ProbeError, ProbeMemoryExceeded
from conformance.profile import ProbeSettings

T_co = TypeVar("T_co", covariant=True)


class Host(Protocol):
    """What probes need from a host backend (a pytest-testinfra ``Host`` satisfies it)."""

    def run(self, command: str, *args: str) -> Any:
        """Run a command; the result has ``rc``, ``stdout`` and ``stderr``."""


def direct(address: str, port: int) -> tuple[str, int]:
    """Dial an endpoint as it is (the probes run on the host itself)."""
    return address, port


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """Everything a probe may use: bounds, the host backend for commands and files, and a dialer.

    ``dial`` maps an endpoint as the host sees it (``127.0.0.1:8000``) to where this process
    connects to reach it (itself, or the local end of an SSH forward).
    """

    settings: ProbeSettings
    host: Host
    dial: Callable[[str, int], tuple[str, int]] = direct
    # What the run allows a probe that pays (None: nothing), where probes record evidence files (None: nowhere),
    # and the secret values those files must never contain.
    spend_cap_cents: int | None = None
    evidence_dir: Path | None = None
    secrets: frozenset[str] = frozenset()


@runtime_checkable
class ProbeSpec(Protocol[T_co]):
    """A hashable description of one observation."""

    def observe(self, ctx: Context) -> T_co:
        """Observe and return the observation, or raise `ProbeError`."""


class Prober:
    """Runs probe specs concurrently, once each."""

    def __init__(self, ctx: Context, *, workers: int = 4) -> None:
        self.ctx = ctx
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe")
        self._futures: dict[ProbeSpec[Any], Future[Any]] = {}
        self._lock = threading.Lock()

    def submit(self, spec: ProbeSpec[Any]) -> Future[Any]:
        """Start ``spec`` unless it already ran or is running; return its future."""
        with self._lock:
            future = self._futures.get(spec)
            if future is None:
                future = self._pool.submit(_guarded, spec, self.ctx)
                self._futures[spec] = future
            return future

    def get(self, spec: ProbeSpec[T_co]) -> T_co:
        """Return the observation of ``spec``, raising its `ProbeError` if it could not observe."""
        result: T_co = self.submit(spec).result()
        return result

    def close(self) -> None:
        """Stop the worker threads (running probes finish within their own deadlines)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _guarded(spec: ProbeSpec[T_co], ctx: Context) -> T_co:
    try:
        return spec.observe(ctx)
    except ProbeError:
        raise
    except MemoryError:
        raise ProbeMemoryExceeded(
            f"{describe(spec)} ran out of memory under the check run's limit "
            "(--memory-limit-mb, GATES_SUITE_MEMORY_MB): its target made it allocate without bound"
        ) from None
    except Exception as exc:  # a bug or an unexpected library error must read as "could not observe"
        raise ProbeError(f"probe failed unexpectedly: {type(exc).__name__}: {exc}") from exc


def describe(spec: object) -> str:
    """A probe named for a message: its kind and its address, port, path or URL."""
    parts = [
        f"{name}={getattr(spec, name)}"
        for name in ("url", "address", "port", "path", "unit")
        if isinstance(getattr(spec, name, None), (str, int))
    ]
    return f"probe {type(spec).__name__}({', '.join(parts)})"
