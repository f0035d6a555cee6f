"""Check identity, the check registry, and the assertion helper checks use.

A check is a pytest test decorated with `check`. The decorator records a `CheckSpec`
(id, title, severity, which targets of a profile it applies to, which probe observations
it needs, and a remediation hint) in `REGISTRY`. The registry refuses duplicate ids.
An *instance* of a check is ``<id>[<target>]``, e.g. ``health.http.body_exact[api]``.
"""

from __future__ import annotations

import contextvars
import importlib
import pkgutil
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import pytest

from conformance.errors import ConfigError
from conformance.profile import Profile

ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
Severity = Literal["critical", "high", "medium", "low"]
F = TypeVar("F", bound=Callable[..., None])


class Target(Protocol):
    """Anything a check runs against: it has a name that appears in the instance id."""

    @property
    def name(self) -> str:
        """The target's name."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckSpec:
    """A check's stable identity and how it is applied to a profile."""

    id: str
    title: str
    severity: Severity
    remediation: str
    targets: Callable[[Profile], Sequence[Any]]
    observe: Callable[[Profile, Any], Any]
    origin: str
    requires: tuple[str, ...] = field(default=())
    drill: bool = False  # it changes the target (and restores it): runs only when explicitly allowed
    spends: bool = False  # it pays real money (a paid call): runs only within an explicit spend allowance
    applies_when: str = ""  # the profile setting that gives the check a target, when one must be set
    needs_systemd: bool = False  # it reads systemd units or timers: no target where no service manager runs


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckInstance:
    """A check applied to one target."""

    id: str
    check: str
    target: str
    drill: bool = False
    spends: bool = False


REGISTRY: dict[str, CheckSpec] = {}


def instance_id(check_id: str, target: str) -> str:
    """``<check>[<target>]``."""
    return f"{check_id}[{target}]"


def check(
    check_id: str,
    *,
    title: str,
    targets: Callable[[Profile], Sequence[Any]],
    observe: Callable[[Profile, Any], Any],
    remediation: str,
    severity: Severity = "critical",
    drill: bool = False,
    spends: bool = False,
    applies_when: str = "",
    needs_systemd: bool = False,
) -> Callable[[F], F]:
    """Register a pytest test as the check ``check_id``.

    A ``drill`` check changes the target while it observes (a deploy, a restore) and puts it back;
    it runs only when the run allows drills, and after every other check. A ``spends`` check pays
    real money while it observes (a paid call); it runs only when the run allows a spend.
    ``applies_when`` names the profile setting that gives the check a target when it has none by
    default (a gate requiring it of a profile without that setting names the setting).
    """
    if not ID_PATTERN.match(check_id):
        raise ValueError(f"check id {check_id!r} is not of the form domain.subject.assertion")

    def decorate(fn: F) -> F:
        origin = f"{fn.__module__}.{fn.__qualname__}"
        spec = CheckSpec(
            id=check_id,
            title=title,
            severity=severity,
            remediation=remediation,
            targets=targets,
            observe=observe,
            origin=origin,
            drill=drill,
            spends=spends,
            applies_when=applies_when,
            needs_systemd=needs_systemd,
        )
        existing = REGISTRY.get(check_id)
        if existing is not None and existing.origin != origin:
            raise pytest.UsageError(f"check id {check_id!r} is declared twice ({existing.origin}, {origin})")
        REGISTRY[check_id] = spec
        fn.__gates_check__ = spec  # type: ignore[attr-defined]
        marked: F = pytest.mark.gates_check(check_id)(fn)
        return marked

    return decorate


def spec_of(fn: object) -> CheckSpec | None:
    """The `CheckSpec` a test function was registered with, if any."""
    spec = getattr(fn, "__gates_check__", None)
    return spec if isinstance(spec, CheckSpec) else None


def load_suite() -> dict[str, CheckSpec]:
    """Import every module of ``conformance.suite`` so the registry is complete."""
    package = importlib.import_module("conformance.suite")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("test_"):
            importlib.import_module(f"conformance.suite.{info.name}")
    return REGISTRY


def catalog(profile: Profile) -> list[CheckInstance]:
    """Every check instance the profile implies, sorted by id."""
    out = []
    for spec in load_suite().values():
        for target in spec.targets(profile):
            out.append(
                CheckInstance(
                    id=instance_id(spec.id, target.name),
                    check=spec.id,
                    target=target.name,
                    drill=spec.drill,
                    spends=spec.spends,
                )
            )
    return sorted(out, key=lambda i: i.id)


def known_check(check_id: str, *, source: str, location: str) -> CheckSpec:
    """Look up a check id, or raise a `ConfigError` that lists the known ids."""
    registry = load_suite()
    if check_id not in registry:
        close = [k for k in sorted(registry) if k.split(".")[0] == check_id.split(".")[0]]
        hint = (
            f"; checks in that domain: {', '.join(close)}"
            if close
            else f"; known: {', '.join(sorted(registry))}"
        )
        raise ConfigError(f"unknown check id {check_id!r}{hint}", source=source, location=location)
    return registry[check_id]


# --- assertions -----------------------------------------------------------------------------


class CheckFailed(AssertionError):
    """A check observed that the deployment does not conform."""

    def __init__(
        self, message: str, *, reason: str, observed: object, expected: object, remediation: str | None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.observed = observed
        self.expected = expected
        self.remediation = remediation


@dataclass(slots=True, kw_only=True)
class Evidence:
    """What a check looked at and compared, collected by `expect`."""

    items: list[dict[str, Any]] = field(default_factory=list)


CURRENT_EVIDENCE: contextvars.ContextVar[Evidence | None] = contextvars.ContextVar(
    "gates_evidence", default=None
)


def expect(
    condition: bool,
    message: str,
    *,
    reason: str,
    observed: object,
    expected: object,
    remediation: str | None = None,
) -> None:
    """Assert ``condition``; on failure raise `CheckFailed` with everything an operator needs.

    ``message`` states target, expectation and observation in one line; ``reason`` is a
    stable snake_case failure code; ``remediation`` overrides the check's default hint.
    """
    __tracebackhide__ = True
    evidence = CURRENT_EVIDENCE.get()
    if evidence is not None:
        evidence.items.append({"observed": observed, "expected": expected, "ok": bool(condition)})
    if not condition:
        raise CheckFailed(
            message, reason=reason, observed=observed, expected=expected, remediation=remediation
        )
