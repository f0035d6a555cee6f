"""The one place that locates the JSON Schemas and validates documents against them."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from conformance.errors import ConfigError

ENV_OVERRIDE = "GATES_SCHEMAS_DIR"


def schemas_dir() -> Path:
    """Return the directory holding ``*.schema.json``.

    Order: ``$GATES_SCHEMAS_DIR``, the ``schemas/`` folder of a checkout, the copy shipped in the wheel.
    """
    override = os.environ.get(ENV_OVERRIDE)
    candidates = [Path(override)] if override else []
    here = Path(__file__).resolve().parent
    candidates += [here.parent / "schemas", here / "_schemas_data"]
    for candidate in candidates:
        if (candidate / "profile.schema.json").is_file():
            return candidate
    raise ConfigError(
        f"cannot find the JSON Schemas (looked in {', '.join(str(c) for c in candidates)}); "
        f"set {ENV_OVERRIDE} to the project's schemas/ directory"
    )


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """Load ``schemas/<name>.schema.json``."""
    path = schemas_dir() / f"{name}.schema.json"
    try:
        schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read schema: {exc}", source=str(path)) from exc
    return schema


@functools.cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return validator


def pointer(path: Any) -> str:
    """Render a jsonschema error path as ``services[2].port``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document root)"


def errors(document: object, schema: str) -> list[ValidationError]:
    """Return every validation error of ``document`` against ``schema``, best first."""
    found = list(_validator(schema).iter_errors(document))  # type: ignore[arg-type]  # any decoded JSON/YAML value
    if not found:
        return []
    best = best_match(found)
    return [best] + [e for e in found if e is not best]


def validate(document: object, schema: str, *, source: str, locate: Any = None) -> None:
    """Raise `ConfigError` naming ``source`` and the location of the first problem.

    ``locate`` optionally maps an error path (a tuple) to a ``line N, column M`` string.
    """
    found = errors(document, schema)
    if not found:
        return
    err = found[0]
    where = pointer(err.absolute_path)
    if locate is not None:
        line = locate(tuple(err.absolute_path))
        if line:
            where = f"{line} ({where})"
    more = f" ({len(found) - 1} more problem(s) after this one)" if len(found) > 1 else ""
    raise ConfigError(f"does not match schema {schema!r}: {err.message}{more}", source=source, location=where)
