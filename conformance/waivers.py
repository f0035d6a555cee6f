"""Waivers: accepted exceptions to failing checks, each with a reason, an approver and an expiry.

A waivers file (schema ``schemas/waivers.schema.json``) is read strictly: a malformed file, an
unknown check id, a missing field or a date that is not a calendar day is a `ConfigError` naming
the file and line. Matching is pure; what a waiver does to a verdict is decided in
``gates.evaluate``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance import _schemas
from conformance.errors import ConfigError
from conformance.yamlsource import load_yaml

SCHEMA = "waivers"


@dataclass(frozen=True, slots=True, kw_only=True)
class Waiver:
    """One accepted exception. ``check`` is an id, ``id[target]``, or either with a trailing ``*``."""

    check: str
    reason: str
    approver: str
    created: dt.date
    expires: dt.date
    source: str = ""
    location: str = ""

    def covers(self, instance: str) -> bool:
        """Whether the waiver names this check instance id (``check[target]``)."""
        if self.check.endswith("*"):
            return instance.startswith(self.check[:-1])
        if "[" in self.check:
            return instance == self.check
        return instance.split("[", 1)[0] == self.check

    def live(self, today: dt.date) -> bool:
        """Applies through its ``expires`` day (UTC)."""
        return today <= self.expires

    def to_json(self) -> dict[str, str]:
        """The waiver as written in the file (dates as YYYY-MM-DD)."""
        return {
            "check": self.check,
            "reason": self.reason,
            "approver": self.approver,
            "created": self.created.isoformat(),
            "expires": self.expires.isoformat(),
        }


def _plain(value: Any) -> Any:
    """YAML reads an unquoted ``2026-12-01`` as a date; the schema speaks of its text."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _day(text: str, *, source: str, location: str | None, field: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(
            f"{field} {text!r} is not a calendar day (YYYY-MM-DD)", source=source, location=location
        ) from exc


def _known(pattern: str, known: Iterable[str]) -> bool:
    """A pattern names a known check: its id part is one, or (with ``*``) some check id starts with it."""
    ids = set(known)
    if pattern.endswith("*"):
        stem = pattern[:-1]
        if "[" in stem:
            return stem.split("[", 1)[0] in ids
        return any(i.startswith(stem) for i in ids)
    return pattern.split("[", 1)[0] in ids


def load_waivers(path: Path, known_checks: Iterable[str]) -> tuple[Waiver, ...]:
    """Read and validate a waivers file; every waiver must name a known check id."""
    doc = load_yaml(path)
    if doc.data is None:
        raise ConfigError(
            "the waivers file is empty (it needs schemaVersion and waivers)",
            source=doc.source,
            location="line 1",
        )
    data = _plain(doc.data)
    _schemas.validate(data, SCHEMA, source=doc.source, locate=doc.locate)
    known = sorted(known_checks)
    out = []
    for index, raw in enumerate(data["waivers"]):
        where = doc.locate(("waivers", index))
        if not _known(raw["check"], known):
            raise ConfigError(
                f"unknown check id {raw['check']!r} (see `gates list` for the check ids)",
                source=doc.source,
                location=doc.locate(("waivers", index, "check")),
            )
        created = _day(
            raw["created"],
            source=doc.source,
            location=doc.locate(("waivers", index, "created")),
            field="created",
        )
        expires = _day(
            raw["expires"],
            source=doc.source,
            location=doc.locate(("waivers", index, "expires")),
            field="expires",
        )
        if expires < created:
            raise ConfigError(
                f"expires {expires} is before created {created}",
                source=doc.source,
                location=doc.locate(("waivers", index, "expires")),
            )
        out.append(
            Waiver(
                check=raw["check"],
                reason=raw["reason"],
                approver=raw["approver"],
                created=created,
                expires=expires,
                source=doc.source,
                location=where or "",
            )
        )
    return tuple(out)


def live_waiver(waivers: Sequence[Waiver], instance: str, today: dt.date) -> Waiver | None:
    """The first live waiver covering ``instance``, if any."""
    return next((w for w in waivers if w.covers(instance) and w.live(today)), None)


def expired_waiver(waivers: Sequence[Waiver], instance: str, today: dt.date) -> Waiver | None:
    """The first lapsed waiver covering ``instance``, if any."""
    return next((w for w in waivers if w.covers(instance) and not w.live(today)), None)
