"""The one clock checks and reports read, so that a run can be pinned to a fixed instant.

``GATES_NOW`` (an ISO 8601 timestamp with a zone, e.g. ``2026-03-25T00:00:05.000Z``) replaces the
wall clock for report timestamps and freshness checks; the check run inherits it from ``gates run``.
"""

from __future__ import annotations

import datetime as dt
import os

from conformance.errors import ConfigError

ENV = "GATES_NOW"


def parse_instant(text: str) -> dt.datetime | None:
    """An ISO 8601 timestamp with a zone (``Z`` or an offset) as an aware UTC datetime, else None."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if value.tzinfo is None:
        return None
    return value.astimezone(dt.UTC)


def now() -> dt.datetime:
    """The current instant: ``$GATES_NOW`` when set, else the wall clock (UTC)."""
    pinned = os.environ.get(ENV)
    if not pinned:
        return dt.datetime.now(dt.UTC)
    value = parse_instant(pinned)
    if value is None:
        raise ConfigError(f"{pinned!r} is not an ISO 8601 timestamp with a zone", source=f"${ENV}")
    return value


def iso_millis(value: dt.datetime) -> str:
    """``2026-03-25T00:00:05.000Z``: UTC, millisecond precision, as JavaScript's ``toISOString``."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
