"""Read YAML documents strictly, keeping line numbers for error messages."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from conformance.errors import ConfigError

PathKey = tuple[str | int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class YamlDocument:
    """A parsed YAML file: its data, raw bytes' digest, and where each value sits."""

    source: str
    data: Any
    sha256: str
    lines: dict[PathKey, str] = field(default_factory=dict)

    def locate(self, path: PathKey) -> str | None:
        """Return ``line N, column M`` of the value at ``path`` (or of its nearest parent)."""
        probe = tuple(path)
        while True:
            if probe in self.lines:
                return self.lines[probe]
            if not probe:
                return None
            probe = probe[:-1]


def _mark(node: yaml.Node) -> str:
    return f"line {node.start_mark.line + 1}, column {node.start_mark.column + 1}"


def _walk(node: yaml.Node, path: PathKey, out: dict[PathKey, str], source: str) -> None:
    out[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        seen: dict[object, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise ConfigError(
                    f"duplicate key {key!r} (first defined at {_mark(seen[key])})",
                    source=source,
                    location=_mark(key_node),
                )
            seen[key] = key_node
            _walk(value_node, (*path, str(key)), out, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), out, source)


def _bad_scalar(text: str) -> str | None:
    """Where the first scalar sits whose implicit type (a timestamp) cannot be constructed."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop(0)
        if isinstance(current, yaml.ScalarNode):
            try:
                yaml.SafeLoader("").construct_object(current, deep=True)
            except ValueError:
                return _mark(current)
        elif isinstance(current, yaml.MappingNode):
            stack.extend(v for pair in current.value for v in pair)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
    return None


def load_yaml(path: Path, *, source: str | None = None) -> YamlDocument:
    """Parse ``path``; any I/O or syntax problem becomes a `ConfigError` naming file and line."""
    name = source or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", source=name) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc}", source=name) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        raise ConfigError(f"invalid YAML: {exc.problem or exc}", source=name, location=where) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", source=name) from exc
    except ValueError as exc:  # a scalar YAML types but cannot build, e.g. the date 2026-02-30
        raise ConfigError(f"invalid YAML value: {exc}", source=name, location=_bad_scalar(text)) from exc
    lines: dict[PathKey, str] = {}
    if node is not None:
        _walk(node, (), lines, name)
    return YamlDocument(source=name, data=data, sha256=hashlib.sha256(raw).hexdigest(), lines=lines)
