"""Field parsers the sections share: HTTP expectations, URLs, CA files, regexes, unique names."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from conformance import origins
from conformance.profile.model import HttpExpectation, Service
from conformance.profile.resolver import Resolver
from conformance.yamlsource import PathKey


def parse_http(r: Resolver, raw: Mapping[str, Any] | None, path: PathKey) -> HttpExpectation | None:
    if raw is None:
        return None
    return HttpExpectation(
        method=r.text(raw.get("method", "GET"), (*path, "method")).upper(),
        path=r.text(raw["path"], (*path, "path")),
        status=r.integer(raw.get("status", 200), (*path, "status"), low=100, high=599),
        body=r.opt_text(raw.get("body"), (*path, "body")),
        content_type=r.opt_text(raw.get("contentType"), (*path, "contentType")),
        json=tuple(
            (k, r.text(v, (*path, "json", k)) if isinstance(v, str) else v)
            for k, v in (raw.get("json") or {}).items()
        ),
    )


def url_endpoint(url: str) -> tuple[str, int]:
    """Host and port an http(s) URL connects to (the scheme's default port when it names none)."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def parse_ca_file(r: Resolver, raw: Any) -> str | None:
    """probe.caFile: a readable PEM file on the machine running gates (empty: the system's CAs only)."""
    if raw is None:
        return None
    text = r.text(raw, ("probe", "caFile")).strip()
    if not text:
        return None
    path = Path(text).expanduser()
    if not path.is_file():
        raise r.fail(("probe", "caFile"), f"no CA certificate file at {text!r}")
    return str(path.resolve())


def parse_url(r: Resolver, raw: Any, path: PathKey, *, base: bool = True) -> str:
    text = r.text(raw, path)
    text = text.rstrip("/") if base else text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise r.fail(path, f"expected an http(s) URL, got {text!r}")
    if not origins.is_address(parts.hostname):
        raise r.fail(path, f"expected an IP address or host name in {text!r}, got {parts.hostname!r}")
    try:
        parts.port  # noqa: B018 -- raises on a port out of range
    except ValueError:
        raise r.fail(path, f"invalid port in {text!r}") from None
    return text


def parse_run_param(r: Resolver, raw: Any, path: PathKey) -> str:
    name = r.text(raw, path).strip()
    if name and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise r.fail(
            path, f"runParam must be a query parameter name (a letter, then letters, digits, _), got {name!r}"
        )
    return name


def check_unique(values: Sequence[str], where: str, what: str, r: Resolver) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise r.fail((*where.split("."), i), f"duplicate {what} {value!r} in {where}")
        seen.add(value)


def parse_regex(r: Resolver, raw: Any, path: PathKey) -> str:
    text = r.text(raw, path)
    try:
        re.compile(text)
    except re.error as exc:
        raise r.fail(path, f"not a valid regular expression: {exc}") from None
    return text


def service_name(r: Resolver, name: Any, by_name: Mapping[str, Service], path: PathKey) -> str | None:
    """``name`` when it names a declared service (None stays None); a located error otherwise."""
    if name is None:
        return None
    if name not in by_name:
        raise r.fail(path, f"{name!r} is not a declared service")
    return str(name)
