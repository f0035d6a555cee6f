"""Report formats other than `GatesGateReport.v1`: a gate definition's ``format:`` selects one.

A format turns a gate's `Evaluation` into a report of someone else's shape (for instance the
upstream Nooterra gate reports, so that upstream's own downstream gates accept them). It names
the JSON Schema every report it writes must satisfy and the schemaVersion that identifies it.
The registry fails loudly: an unknown format name is a `ConfigError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from conformance.errors import ConfigError
from conformance.profile import Profile
from conformance.redact import Redactor
from gates.evaluate import Evaluation
from gates.gate import Gate

DEFAULT = "gates"


class ReportFormat(Protocol):
    """Writes one gate's report in a foreign shape."""

    @property
    def name(self) -> str:
        """The value of ``format:`` in a gate definition."""

    @property
    def schema_version(self) -> str:
        """The ``schemaVersion`` of its reports."""

    @property
    def schema(self) -> str:
        """The schema (``schemas/<name>.schema.json``) its reports satisfy."""

    def check(self, gate: Gate) -> None:
        """Refuse (`ConfigError`) a gate whose required checks this format cannot report."""

    def build(
        self,
        gate: Gate,
        profile: Profile,
        evaluation: Evaluation,
        *,
        captured_at: str | None,
        generated_at: str,
        redactor: Redactor,
    ) -> dict[str, Any]:
        """The report, with its artifactHash."""

    def instance_ids(self) -> Mapping[str, str]:
        """Report check id → the check instance id it reports."""

    @property
    def signable(self) -> bool:
        """Whether its reports may carry an Ed25519 ``signature`` of their artifactHash."""

    def prepare(self, profile: Profile) -> None:
        """Refuse (`ConfigError`), before any check runs, a profile this format cannot report on."""

    def artifact_hash(self, report: Mapping[str, Any]) -> str:
        """The artifactHash ``report`` must carry, by this format's own rule."""

    def not_passing(self, report: Mapping[str, Any]) -> dict[str, str]:
        """Instance id (or, for a shape that names no targets, check id) → status, for every check
        the report records as not passing."""


def _registry() -> dict[str, ReportFormat]:
    from gates.formats import hosted_baseline, nooterra

    return {f.name: f for f in (*nooterra.FORMATS, *hosted_baseline.FORMATS)}


def names() -> list[str]:
    """Every format name a gate definition may select."""
    return sorted([DEFAULT, *_registry()])


def get(name: str, *, source: str = "<gate>", location: str | None = None) -> ReportFormat:
    """The format called ``name``; unknown names are a `ConfigError` listing the known ones."""
    found = _registry().get(name)
    if found is None:
        raise ConfigError(
            f"unknown report format {name!r}; known: {', '.join(names())}", source=source, location=location
        )
    return found


def for_report(report: object) -> ReportFormat | None:
    """The format that wrote ``report`` (by its schemaVersion, or its ``type`` where a shape names its
    version so), or None for `GatesGateReport.v1`."""
    if not isinstance(report, dict):
        return None
    version = report.get("schemaVersion", report.get("type"))
    return next((f for f in _registry().values() if f.schema_version == version), None)
