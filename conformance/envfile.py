"""Parse systemd ``EnvironmentFile=`` files the way systemd reads them."""

from __future__ import annotations

import re
from dataclasses import dataclass

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvAssignment:
    """One ``KEY=VALUE`` line."""

    key: str
    value: str
    line: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedEnv:
    """Every assignment in file order, and the lines systemd would ignore."""

    assignments: tuple[EnvAssignment, ...]
    invalid_lines: tuple[int, ...]

    def effective(self) -> dict[str, str]:
        """The environment systemd builds: the last assignment of a key wins."""
        return {a.key: a.value for a in self.assignments}

    def duplicates(self) -> dict[str, list[int]]:
        """Keys assigned more than once, with their line numbers."""
        lines: dict[str, list[int]] = {}
        for a in self.assignments:
            lines.setdefault(a.key, []).append(a.line)
        return {k: v for k, v in lines.items() if len(v) > 1}


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        inner = value[1:-1]
        return inner.replace('\\"', '"').replace("\\\\", "\\") if value[0] == '"' else inner
    return value


def parse_env(text: str) -> ParsedEnv:
    """Parse ``text``; comments (``#``, ``;``) and blank lines are skipped, backslash continues a line."""
    assignments: list[EnvAssignment] = []
    invalid: list[int] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        number = i + 1
        line = lines[i]
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + lines[i]
        i += 1
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        key, sep, value = stripped.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            invalid.append(number)
            continue
        assignments.append(EnvAssignment(key=key, value=_unquote(value.strip()), line=number))
    return ParsedEnv(assignments=tuple(assignments), invalid_lines=tuple(invalid))
