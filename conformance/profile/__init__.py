"""Deployment profiles: what a deployment declares, loaded once and then frozen.

A profile is a YAML file validated against ``schemas/profile.schema.json``. Strings may
reference variables as ``${name}``; a variable's value comes from its default, then from the
environment variable it names (for secrets), then from ``--set name=value``.

``model`` holds the frozen types, ``resolver`` the variables, ``build`` turns a validated document into a
``Profile`` with the section parsers of ``fields``, ``runtime`` and ``nooterra``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from conformance import _schemas
from conformance.errors import ConfigError
from conformance.profile.build import build
from conformance.profile.fields import url_endpoint
from conformance.profile.model import (
    Bundle,
    BundleFile,
    Drill,
    EnvFile,
    Guardrail,
    HostedEvidence,
    HttpExpectation,
    JsonScalar,
    NooterraApi,
    OutputStatus,
    PaidCall,
    ProbeSettings,
    Profile,
    RateLimitProbe,
    Release,
    Route,
    Routes,
    Service,
    ServiceKind,
    Slot,
    Smoke,
    Timer,
    TimerOutput,
    UpgradeDrill,
    Variable,
)
from conformance.profile.resolver import parse_sets
from conformance.yamlsource import load_yaml

__all__ = [
    "BUILTIN_DIR",
    "Bundle",
    "BundleFile",
    "Drill",
    "EnvFile",
    "Guardrail",
    "HostedEvidence",
    "HttpExpectation",
    "JsonScalar",
    "NooterraApi",
    "OutputStatus",
    "PaidCall",
    "ProbeSettings",
    "Profile",
    "RateLimitProbe",
    "Release",
    "Route",
    "Routes",
    "Service",
    "ServiceKind",
    "Slot",
    "Smoke",
    "Timer",
    "TimerOutput",
    "UpgradeDrill",
    "Variable",
    "builtin_profiles",
    "load_profile",
    "parse_sets",
    "resolve_profile_path",
    "url_endpoint",
]


BUILTIN_DIR = Path(__file__).resolve().parent.parent / "profiles"


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped with the suite."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def resolve_profile_path(name_or_path: str) -> tuple[Path, str]:
    """Map a built-in name or a file path to ``(path, display name)``."""
    candidate = BUILTIN_DIR / f"{name_or_path}.yaml"
    if "/" not in name_or_path and not name_or_path.endswith((".yaml", ".yml")) and candidate.is_file():
        return candidate, f"builtin:{name_or_path}"
    path = Path(name_or_path)
    if path.is_file():
        return path, str(path)
    raise ConfigError(
        f"unknown profile {name_or_path!r}: not a built-in ({', '.join(builtin_profiles())}) "
        "and no such file",
        source="<argument --profile>",
    )


def load_profile(
    name_or_path: str, overrides: Mapping[str, str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Profile:
    """Load, validate and resolve a profile. Every problem is a `ConfigError` naming file and line."""
    path, display = resolve_profile_path(name_or_path)
    doc = load_yaml(path, source=display)
    _schemas.validate(doc.data, "profile", source=display, locate=doc.locate)
    return build(doc, dict(overrides or {}), os.environ if environ is None else environ)
