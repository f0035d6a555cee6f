"""Bounds on every file the suite reads: size, nesting depth and number of values.

Profiles, gate definitions, reports given to ``verify-report`` or ``--supplied``, paid-call
bundles and any later policy file go through `read_bounded` and `load_json` (or
`conformance.yamlsource.load_yaml`, which applies the same `InputLimits`), so a hostile or
careless file is refused quickly, with exit 2 and a message naming the file and the place,
before anything walks it recursively.

Each bound can be changed through the environment (read once per load):

==============================  ==========  ==========================================
variable                        default     bounds
==============================  ==========  ==========================================
``GATES_MAX_INPUT_BYTES``       4194304     bytes of one file
``GATES_MAX_INPUT_DEPTH``       64          nesting of mappings and sequences
``GATES_MAX_INPUT_VALUES``      200000      values of one document, after YAML aliases
==============================  ==========  ==========================================
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.errors import ConfigError

BYTES_ENV = "GATES_MAX_INPUT_BYTES"
DEPTH_ENV = "GATES_MAX_INPUT_DEPTH"
VALUES_ENV = "GATES_MAX_INPUT_VALUES"


@dataclass(frozen=True, slots=True, kw_only=True)
class InputLimits:
    """The bounds one input file must stay within."""

    max_bytes: int = 4 << 20
    max_depth: int = 64
    max_values: int = 200_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> InputLimits:
        """The defaults, overridden by ``GATES_MAX_INPUT_*``; a value that is not a positive integer is a `ConfigError`."""
        env = os.environ if environ is None else environ
        base = cls()
        return cls(
            max_bytes=_positive(env, BYTES_ENV, base.max_bytes),
            max_depth=_positive(env, DEPTH_ENV, base.max_depth),
            max_values=_positive(env, VALUES_ENV, base.max_values),
        )


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"must be a positive integer, got {raw!r}", source=f"<environment {name}>")
    return int(raw)


def read_bounded(path: Path, *, source: str, limits: InputLimits | None = None, what: str = "file") -> bytes:
    """Read ``path`` without ever holding more than ``max_bytes + 1`` of it; a bigger file is a `ConfigError`."""
    cap = (limits or InputLimits.from_env()).max_bytes
    try:
        with path.open("rb") as handle:
            data = handle.read(cap + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror or exc}", source=source) from exc
    if len(data) > cap:
        raise ConfigError(
            f"file is larger than the input limit of {cap} bytes (set {BYTES_ENV} to raise it)",
            source=source,
            location="byte 1",
        )
    return data


def shape_error(data: Any, *, source: str, limits: InputLimits) -> ConfigError | None:
    """Walk ``data`` without recursion; a document nested too deep or holding too many values is refused.

    The error names the JSON path of the first value past the bound.
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    seen = 1
    while stack:
        value, path = stack.pop()
        if not isinstance(value, (dict, list)) or not value:
            continue
        if len(path) >= limits.max_depth:
            return ConfigError(
                f"is nested deeper than {limits.max_depth} levels (set {DEPTH_ENV} to raise the limit)",
                source=source,
                location=_pointer(path),
            )
        seen += len(value)
        if seen > limits.max_values:
            return ConfigError(
                f"holds more than {limits.max_values} values (set {VALUES_ENV} to raise the limit)",
                source=source,
                location=_pointer(path),
            )
        if isinstance(value, dict):
            stack.extend((v, (*path, str(k))) for k, v in value.items())
        else:
            stack.extend((v, (*path, i)) for i, v in enumerate(value))
    return None


def _pointer(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path[:12]:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    if len(path) > 12:
        out += f"... ({len(path)} levels)"
    return out or "(document root)"


def _deep_offset(text: str, max_depth: int) -> str:
    """``line N, column M`` where the text first opens more than ``max_depth`` brackets (strings skipped)."""
    depth, line, col, in_string, escaped = 0, 1, 0, False, False
    for char in text:
        col += 1
        if char == "\n":
            line, col = line + 1, 0
        elif in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                break
        elif char in "]}":
            depth -= 1
    return f"line {line}, column {col}"


def load_json(path: Path, *, source: str, limits: InputLimits | None = None, what: str = "file") -> Any:
    """Read and parse a JSON file within ``limits``; every problem is a `ConfigError` naming file and place."""
    bounds = limits or InputLimits.from_env()
    raw = read_bounded(path, source=source, limits=bounds, what=what)
    return parse_json(raw, source=source, limits=bounds)


def parse_json(raw: bytes, *, source: str, limits: InputLimits) -> Any:
    """Parse JSON bytes within ``limits`` (see `load_json`)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text: {exc.reason}", source=source, location=f"byte {exc.start + 1}"
        ) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"not JSON: {exc.msg}", source=source, location=f"line {exc.lineno}, column {exc.colno}"
        ) from exc
    except RecursionError:
        raise ConfigError(
            f"is nested deeper than {limits.max_depth} levels (set {DEPTH_ENV} to raise the limit)",
            source=source,
            location=_deep_offset(text, limits.max_depth),
        ) from None
    except ValueError as exc:  # e.g. an integer longer than Python converts
        raise ConfigError(f"not JSON: {exc}", source=source) from exc
    problem = shape_error(data, source=source, limits=limits)
    if problem is not None:
        raise problem
    return data
