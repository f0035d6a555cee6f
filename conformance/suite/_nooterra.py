"""Targets and observations shared by the Nooterra bundle checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conformance.checks import expect
from conformance.errors import Undetermined
from conformance.nooterra import FileRead, Outcome, parse_json
from conformance.probes.bundle import BundleRead
from conformance.profile import Bundle, Profile


def bundle_with(*keys: str) -> Callable[[Profile], list[Bundle]]:
    """The profile's bundle, when it declares every file in ``keys``."""

    def select(profile: Profile) -> list[Bundle]:
        bundle = profile.bundle
        if bundle is None or any(bundle.file(k) is None for k in keys):
            return []
        return [bundle]

    select.__doc__ = f"The deployment bundle, when it declares {', '.join(keys)}."
    return select


def path_of(bundle: Bundle, key: str) -> str:
    """The declared path of the bundle file ``key``."""
    found = bundle.file(key)
    if found is None:  # the selector only yields bundles that declare it
        raise Undetermined(f"the bundle declares no {key} file")
    return found.path


def read(*keys: str) -> Callable[[Profile, Bundle], Any]:
    """Observe the bundle files ``keys``: one `BundleRead`, or a dict of them by key."""

    def observe(_: Profile, bundle: Bundle) -> Any:
        specs = {k: BundleRead(path=path_of(bundle, k)) for k in keys}
        return specs[keys[0]] if len(keys) == 1 else specs

    return observe


def text(obs: FileRead, prerequisite: str) -> str:
    """The file's text, or `Undetermined` pointing at the check that reports it unreadable."""
    if obs.text is None:
        raise Undetermined(f"{obs.path} cannot be read ({obs.error}); see {prerequisite}")
    return obs.text


def json_of(obs: FileRead, prerequisite: str) -> Any:
    """The file's JSON value, or `Undetermined` pointing at the check that reports it."""
    value, error = parse_json(obs)
    if error is not None:
        raise Undetermined(f"{obs.path} is not readable JSON ({error}); see {prerequisite}")
    return value


def conclude(outcome: Outcome, *, expected: object) -> None:
    """Pass or fail with the upstream failure code; the upstream detail is the observation."""
    __tracebackhide__ = True
    path = outcome.detail.get("path")
    expect(
        outcome.ok,
        f"{path}: {outcome.message}" if path else outcome.message,
        reason=outcome.failure_code or "failed",
        observed=outcome.detail,
        expected=expected,
    )
