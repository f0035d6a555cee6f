"""Variables and the resolver: ``${name}`` references, their values, and errors that name file and line.

A variable's value comes from its default, then from the environment variable it names (for secrets), then
from ``--set name=value``; an error in a value an argument set is blamed on that argument.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from conformance import _schemas, origins
from conformance.errors import ConfigError
from conformance.profile.model import Variable
from conformance.yamlsource import PathKey, YamlDocument

_VAR = re.compile(r"\$\{([A-Za-z0-9_.-]+)\}|\$\$")


_ACCOUNT = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?|[0-9]{1,10}")


_SET = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*)=(.*)$", re.DOTALL)


def parse_sets(pairs: Iterable[str]) -> dict[str, str]:
    """Parse ``--set name=value`` arguments."""
    out: dict[str, str] = {}
    for pair in pairs:
        match = _SET.match(pair)
        if not match:
            raise ConfigError(f"expected NAME=VALUE, got {pair!r}", source="<argument --set>")
        out[match.group(1)] = match.group(2)
    return out


class Resolver:
    def __init__(
        self, doc: YamlDocument, values: dict[str, str], given: Mapping[str, str] | None = None
    ) -> None:
        self.doc = doc
        self.values = values
        self.given = dict(given or {})  # variable -> the argument or environment variable that set it

    def fail(self, path: PathKey, message: str) -> ConfigError:
        loc = self.doc.locate(path)
        where = _schemas.pointer(path)
        at = f"{loc} ({where})" if loc else where
        culprit = origins.blamed(self._raw(path), self.given)
        if culprit is not None:
            return ConfigError(f"{message} (used at {self.doc.source}: {at})", source=culprit)
        return ConfigError(message, source=self.doc.source, location=at)

    def _raw(self, path: PathKey) -> object:
        node: object = self.doc.data
        for part in path:
            if isinstance(node, dict) and part in node:
                node = node[part]
                continue
            if not (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
                return None
            node = node[part]
        return node

    def text(self, raw: Any, path: PathKey) -> str:
        if not isinstance(raw, str):
            return str(raw)

        def sub(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group(1)
            if name not in self.values:
                raise self.fail(
                    path, f"unknown variable ${{{name}}}; declared: {', '.join(sorted(self.values))}"
                )
            return self.values[name]

        return _VAR.sub(sub, raw)

    def opt_text(self, raw: Any, path: PathKey) -> str | None:
        return None if raw is None else self.text(raw, path)

    def integer(self, raw: Any, path: PathKey, *, low: int, high: int) -> int:
        text = self.text(raw, path)
        try:
            value = int(text)
        except ValueError:
            raise self.fail(path, f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise self.fail(path, f"expected an integer from {low} to {high}, got {value}")
        return value

    def account(self, raw: Any, path: PathKey) -> str | None:
        """A user or group name as the target's account database spells one (useradd's rule, ``$`` allowed
        last for machine accounts), or a numeric id."""
        if raw is None:
            return None
        text = self.text(raw, path)
        if not _ACCOUNT.fullmatch(text):
            raise self.fail(
                path, f"expected a user or group name (letters, digits, '_', '-', '.'), got {text!r}"
            )
        return text

    def target_path(self, raw: Any, path: PathKey) -> str:
        """A path on the target: absolute, because a command run over SSH or in a namespace has no useful
        working directory to be relative to."""
        text = self.text(raw, path)
        if not text.startswith("/") or "\0" in text:
            raise self.fail(path, f"expected an absolute path, got {text!r}")
        return text

    def number(self, raw: Any, path: PathKey) -> float:
        text = self.text(raw, path)
        try:
            value = float(text)
        except ValueError:
            raise self.fail(path, f"expected a number, got {text!r}") from None
        if not value > 0:
            raise self.fail(path, f"expected a positive number, got {text!r}")
        return value


def resolve_variables(
    doc: YamlDocument, overrides: dict[str, str], environ: Mapping[str, str]
) -> tuple[Variable, ...]:
    declared: dict[str, Any] = doc.data.get("variables") or {}
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise ConfigError(
            f"unknown variable(s) {', '.join(unknown)}; profile {doc.data['name']!r} declares: "
            f"{', '.join(sorted(declared)) or '(none)'}",
            source="<argument --set>",
        )
    out: list[Variable] = []
    for name, spec in declared.items():
        secret = bool(spec.get("secret", False))
        env_name = spec.get("env")
        about = {
            "default": str(spec["default"]),
            "env": env_name,
            "description": str(spec.get("description", "")),
        }
        if name in overrides:
            out.append(Variable(name=name, value=overrides[name], secret=secret, origin="argument", **about))
        elif env_name and env_name in environ:
            out.append(
                Variable(name=name, value=environ[env_name], secret=secret, origin="environment", **about)
            )
        else:
            value = _default(doc, name, str(spec["default"]), {v.name: v.value for v in out})
            out.append(Variable(name=name, value=value, secret=secret, origin="default", **about))
    return tuple(out)


def _default(doc: YamlDocument, name: str, raw: str, earlier: Mapping[str, str]) -> str:
    """A variable's default, which may refer to variables declared before it (``http://${host}:${port}``)."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        ref = match.group(1)
        if ref not in earlier:
            path: PathKey = ("variables", name, "default")
            loc = doc.locate(path)
            where = _schemas.pointer(path)
            raise ConfigError(
                f"the default of {name!r} refers to ${{{ref}}}, which is not a variable declared before it",
                source=doc.source,
                location=f"{loc} ({where})" if loc else where,
            )
        return earlier[ref]

    return _VAR.sub(sub, raw)
