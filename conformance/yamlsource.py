"""Read YAML documents strictly and within `InputLimits`, keeping line numbers for error messages.

Size is bounded before parsing, nesting while composing (the composer recurses), and the
expansion of aliases before anything walks the document: an alias (or a ``<<`` merge) that
would expand it beyond ``max_values`` values or ``max_depth`` levels, or one that refers to
itself, is refused with the alias's line. Every loader of a YAML input (profiles, gate
definitions, any later policy file) goes through `load_yaml`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from conformance.errors import ConfigError
from conformance.inputlimits import DEPTH_ENV, VALUES_ENV, InputLimits, read_bounded

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


def _at(mark: Any) -> str | None:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else None


def _mark(node: yaml.Node) -> str:
    return f"line {node.start_mark.line + 1}, column {node.start_mark.column + 1}"


class _BoundedLoader(yaml.SafeLoader):
    """A safe loader that refuses nesting past ``max_depth`` while it composes, and records its aliases."""

    def __init__(self, text: str, *, source: str, limits: InputLimits) -> None:
        super().__init__(text)
        self.source = source
        self.limits = limits
        self.depth = 0
        self.aliases: list[str | None] = []

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # PyYAML's stub leaves it untyped
        if isinstance(event, yaml.AliasEvent):
            self.aliases.append(_at(event.start_mark))
            return super().compose_node(parent, index)
        self.depth += 1
        try:
            if self.depth > self.limits.max_depth:
                raise ConfigError(
                    f"is nested deeper than {self.limits.max_depth} levels (set {DEPTH_ENV} to raise the limit)",
                    source=self.source,
                    location=_at(event.start_mark),
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (
            ValueError,
            TypeError,
            OverflowError,
        ) as exc:  # a scalar YAML types but cannot build: 2026-13-45
            raise ConfigError(f"invalid YAML value: {exc}", source=self.source, location=_mark(node)) from exc


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node, loader: _BoundedLoader) -> None:
    """Count the values and levels of the document as its aliases expand it, without expanding it."""
    limits = loader.limits
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    first_alias = loader.aliases[0] if loader.aliases else None
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            kids = _children(node)
            size[key] = min(1 + sum(size[id(k)] for k in kids), limits.max_values + 1)
            height[key] = 1 + max((height[id(k)] for k in kids), default=0)
            open_nodes.discard(key)
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise ConfigError(
                "an alias refers to a node that contains it (a recursive document)",
                source=loader.source,
                location=_mark(node),
            )
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((kid, False) for kid in _children(node))
    if size[id(root)] > limits.max_values:
        cause = (
            f"its aliases expand it to more than {limits.max_values} values"
            if first_alias
            else (f"holds more than {limits.max_values} values")
        )
        raise ConfigError(
            f"{cause} (set {VALUES_ENV} to raise the limit)", source=loader.source, location=first_alias
        )
    if height[id(root)] > limits.max_depth:
        raise ConfigError(
            f"its aliases nest it deeper than {limits.max_depth} levels (set {DEPTH_ENV} to raise the limit)",
            source=loader.source,
            location=first_alias,
        )


def _walk(node: yaml.Node, path: PathKey, out: dict[PathKey, str], source: str) -> None:
    out[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        seen: dict[object, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = (
                key_node.value
                if isinstance(key_node, yaml.ScalarNode)
                else f"<{key_node.tag}@{id(key_node)}>"
            )
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


def load_yaml(path: Path, *, source: str | None = None, limits: InputLimits | None = None) -> YamlDocument:
    """Parse ``path`` within ``limits``; any problem becomes a `ConfigError` naming file and place."""
    name = source or str(path)
    bounds = limits or InputLimits.from_env()
    raw = read_bounded(path, source=name, limits=bounds)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text: {exc.reason}", source=name, location=f"byte {exc.start + 1}"
        ) from exc
    lines: dict[PathKey, str] = {}
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text, source=name, limits=bounds)
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node, loader)
            _walk(node, (), lines, name)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(f"invalid YAML: {exc.problem or exc}", source=name, location=_at(mark)) from exc
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, e.g. a control character
        raise ConfigError(
            f"invalid YAML: character U+{exc.character:04X} is not allowed",
            source=name,
            location=f"character {exc.position + 1}",
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", source=name, location="(document)") from exc
    finally:
        if loader is not None:
            loader.dispose()
    return YamlDocument(source=name, data=data, sha256=hashlib.sha256(raw).hexdigest(), lines=lines)
