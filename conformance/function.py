"""What a profile declares about function, beyond liveness: schema heads and functional API requests.

A *schema head* says how to read which migrations a service's database has applied (a table and column,
or a command that prints them) and how to ask the running release which it expects (a command that prints
the release's heads). A *functional request* is a read-only request to an API, with the status and the
JSON Schema its body must satisfy; it is sent directly and through every proxy route leading to the API.
Both are parsed here from the profile's ``schemaHeads`` and ``requests``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jsonschema

from conformance.yamlsource import PathKey

if TYPE_CHECKING:
    from conformance.profile import Service
    from conformance.profile.resolver import Resolver

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaHead:
    """Where a service's applied migrations are read and how its release names the ones it expects."""

    service: str  # the service that owns the database: the check's target
    postgres: str  # the postgres service the database lives on (address, role, password)
    database: str  # the database name
    schema: str | None  # the schema of the migrations table (None: the role's search_path)
    table: str | None  # applied migrations: a table and column ...
    column: str | None
    applied_command: str | None  # ... or a command on the target that prints them, one per line
    expected_command: str  # a command on the target that prints the release's heads, one per line
    timeout_s: int

    @property
    def name(self) -> str:
        """The owning service's name: the target in check ids."""
        return self.service


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiRequest:
    """A read-only request an API must answer with the declared status and a body valid under a JSON Schema."""

    name: str  # the target in check ids
    service: str  # the API it is sent to
    method: str
    path: str
    status: int
    body_schema: str  # a JSON Schema (draft 2020-12) the JSON body must satisfy, as canonical JSON text
    routed: bool = True  # also sent through every proxy route whose upstream is the service
    # Request headers (e.g. an ops token); kept out of reprs, since they may carry secrets.
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def schema(self) -> dict[str, Any]:
        """The body's JSON Schema."""
        loaded: dict[str, Any] = json.loads(self.body_schema)
        return loaded


def head_lines(text: str) -> tuple[str, ...]:
    """Heads printed one per line (``alembic heads`` prints ``<rev> (head)``): each line's first word."""
    return tuple(sorted({line.split()[0] for line in text.splitlines() if line.split()}))


def _identifier(r: Resolver, raw: Any, path: PathKey) -> str:
    text = r.text(raw, path)
    if not _IDENTIFIER.fullmatch(text):
        raise r.fail(path, f"expected an SQL identifier (letters, digits, '_'), got {text!r}")
    return text


def schema_heads(
    r: Resolver, raws: Sequence[Mapping[str, Any]], services: Sequence[Service]
) -> tuple[SchemaHead, ...]:
    """Parse ``schemaHeads``; an entry whose ``expected.command`` is empty declares nothing."""
    by_name = {s.name: s for s in services}
    out: list[SchemaHead] = []
    for i, raw in enumerate(raws):
        p: PathKey = ("schemaHeads", i)
        expected = r.text(raw["expected"]["command"], (*p, "expected", "command")).strip()
        if not expected:
            continue
        if raw["service"] not in by_name:
            raise r.fail((*p, "service"), f"service {raw['service']!r} is not a declared service")
        pg = by_name.get(raw["postgres"])
        if pg is None or pg.kind != "postgres":
            raise r.fail((*p, "postgres"), f"{raw['postgres']!r} is not a declared postgres service")
        applied = raw["applied"]
        command = (
            r.text(applied["command"], (*p, "applied", "command")).strip() if "command" in applied else None
        )
        if command == "":
            raise r.fail((*p, "applied", "command"), "an empty command cannot print the applied migrations")
        database = r.text(raw["database"], (*p, "database")) if "database" in raw else (pg.database or "")
        if not database:
            raise r.fail(p, f"postgres service {pg.name!r} declares no database: name one here")
        schema = r.text(raw["schema"], (*p, "schema")) if "schema" in raw else None
        out.append(
            SchemaHead(
                service=raw["service"],
                postgres=pg.name,
                database=database,
                schema=None if not schema else _identifier(r, schema, (*p, "schema")),
                table=None
                if command is not None
                else _identifier(r, applied["table"], (*p, "applied", "table")),
                column=None
                if command is not None
                else _identifier(r, applied["column"], (*p, "applied", "column")),
                applied_command=command,
                expected_command=expected,
                timeout_s=r.integer(raw.get("timeoutSeconds", 60), (*p, "timeoutSeconds"), low=1, high=3600),
            )
        )
    _unique_names([h.service for h in out], "schemaHeads", "service", r)
    return tuple(out)


def api_requests(
    r: Resolver, raws: Sequence[Mapping[str, Any]], services: Sequence[Service]
) -> tuple[ApiRequest, ...]:
    """Parse ``requests``: each names an http service, a path and a valid JSON Schema. A request with a header
    whose value resolves empty (a token the run was not given) declares nothing."""
    by_name = {s.name: s for s in services}
    out: list[ApiRequest] = []
    for i, raw in enumerate(raws):
        p: PathKey = ("requests", i)
        svc = by_name.get(raw["service"])
        if svc is None or svc.kind != "http":
            raise r.fail((*p, "service"), f"{raw['service']!r} is not a declared http service")
        path = r.text(raw["path"], (*p, "path"))
        if not path.startswith("/"):
            raise r.fail((*p, "path"), f"the request path must start with '/', got {path!r}")
        headers = tuple(
            (str(k), r.text(v, (*p, "headers", k))) for k, v in (raw.get("headers") or {}).items()
        )
        if any(not v for _, v in headers):
            continue
        body_schema = raw["bodySchema"]
        try:
            jsonschema.Draft202012Validator.check_schema(body_schema)
        except jsonschema.SchemaError as exc:
            raise r.fail((*p, "bodySchema"), f"not a valid JSON Schema: {exc.message}") from None
        out.append(
            ApiRequest(
                name=raw["name"],
                service=svc.name,
                method=raw.get("method", "GET"),
                path=path,
                status=r.integer(raw.get("status", 200), (*p, "status"), low=100, high=599),
                body_schema=json.dumps(body_schema, sort_keys=True, separators=(",", ":")),
                routed=bool(raw.get("routed", True)),
                headers=headers,
            )
        )
    _unique_names([q.name for q in out], "requests", "name", r)
    return tuple(out)


def _unique_names(values: Sequence[str], where: str, what: str, r: Resolver) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise r.fail((where, i), f"duplicate {what} {value!r} in {where}")
        seen.add(value)
