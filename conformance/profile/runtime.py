"""The runtime sections: timer outputs, the deploy drill, the upgrade drill and the preview slots."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from conformance.profile.fields import (
    check_unique,
)
from conformance.profile.model import (
    Drill,
    OutputStatus,
    Service,
    Slot,
    UpgradeDrill,
)
from conformance.profile.resolver import Resolver
from conformance.yamlsource import PathKey


def parse_output_status(r: Resolver, raw: Mapping[str, Any] | None, path: PathKey) -> OutputStatus | None:
    """``output.status``: the top-level field a job's output reports its outcome in, and its success values."""
    if raw is None:
        return None
    ok = raw["ok"]
    values = (ok,) if isinstance(ok, str) else tuple(ok)
    if not values:
        raise r.fail((*path, "ok"), "expected at least one value that means success")
    return OutputStatus(
        field=r.text(raw["field"], (*path, "field")),
        ok=tuple(r.text(v, (*path, "ok", i)) for i, v in enumerate(values)),
    )


def parse_drill(r: Resolver, raw: Mapping[str, Any] | None, services: Sequence[Service]) -> Drill | None:
    if raw is None:
        return None
    p = ("release", "drill")
    registry = raw["registry"]
    if not any(s.name == registry["service"] and s.kind == "postgres" for s in services):
        raise r.fail(
            (*p, "registry", "service"), f"{registry['service']!r} is not a declared postgres service"
        )
    commands = {key: r.text(raw[key], (*p, key)) for key in ("deploy", "rollback")}
    for key, command in commands.items():
        if "{release}" not in command:
            via = f" (it is {raw[key]!r}: check that variable's value)" if "${" in str(raw[key]) else ""
            raise r.fail((*p, key), f"the {key} command must contain {{release}}, got {command!r}{via}")
    units = raw.get("units")
    return Drill(
        deploy=commands["deploy"],
        rollback=commands["rollback"],
        candidate=r.text(raw["candidate"], (*p, "candidate")),
        broken=r.text(raw["broken"], (*p, "broken")),
        registry_service=registry["service"],
        registry_table=registry["table"],
        units=tuple(r.text(u, (*p, "units", j)) for j, u in enumerate(units))
        if units is not None
        else tuple(s.unit for s in services if s.unit),
        complete_marker=r.text(raw.get("completeMarker", ".deploy-meta"), (*p, "completeMarker")),
        timeout_s=r.integer(raw.get("timeoutSeconds", 180), (*p, "timeoutSeconds"), low=10, high=3600),
    )


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_upgrade_drill(
    r: Resolver, raw: Mapping[str, Any] | None, services: Sequence[Service]
) -> UpgradeDrill | None:
    if raw is None:
        return None
    p: PathKey = ("upgradeDrill",)
    if not any(s.name == raw["service"] and s.kind == "postgres" for s in services):
        raise r.fail((*p, "service"), f"{raw['service']!r} is not a declared postgres service")

    def text(key: str, default: str = "") -> str:
        return r.text(raw.get(key, default), (*p, key)).strip()

    def named(key: str, default: str, pattern: re.Pattern[str], what: str) -> str:
        value = text(key, default)
        if value and not pattern.match(value):
            raise r.fail((*p, key), f"{key} must be {what}, got {value!r}")
        return value

    live = tuple(t.strip() for t in text("liveTables").split(",") if t.strip())
    for table in live:
        if not _IDENT.match(table):
            raise r.fail((*p, "liveTables"), f"liveTables must list table names, got {table!r}")
    schema = text("schema")
    if not schema:
        raise r.fail((*p, "schema"), "the drill needs the schema to back up")
    return UpgradeDrill(
        service=raw["service"],
        schema=schema,
        migrate=text("migrate"),
        rollback=text("rollback"),
        migrations_table=named("migrationsTable", "schema_migrations", _IDENT, "a table name")
        or "schema_migrations",
        migrations_column=named("migrationsColumn", "version", _IDENT, "a column name") or "version",
        scratch_database=text("scratchDatabase"),
        scratch_schema=text("scratchSchema"),
        pg_bindir=text("pgBindir").rstrip("/"),
        live_tables=live,
        source_release=text("sourceRelease"),
        target_release=text("targetRelease"),
        schema_env=named("schemaEnv", "", _ENV_NAME, "an environment variable name"),
        url_env=named("urlEnv", "", _ENV_NAME, "an environment variable name"),
        timeout_s=r.integer(raw.get("timeoutSeconds", 600), (*p, "timeoutSeconds"), low=10, high=86400),
    )


def parse_slots(
    r: Resolver, raws: Sequence[Mapping[str, Any]], services: Sequence[Service]
) -> tuple[Slot, ...]:
    by_name = {s.name: s for s in services}
    out = []
    for i, raw in enumerate(raws):
        p = ("slots", i)
        for role, kind in (("web", "http"), ("api", "http")):
            svc = by_name.get(raw[role])
            if svc is None or svc.kind != kind:
                raise r.fail((*p, role), f"{raw[role]!r} is not a declared http service")
        out.append(
            Slot(
                name=raw["name"],
                web=raw["web"],
                api=raw["api"],
                database=r.text(raw["database"], (*p, "database")),
                host=r.text(raw["host"], (*p, "host")),
                api_probe=r.text(raw.get("apiProbe", "/api/slots/contract"), (*p, "apiProbe")),
                database_key=raw.get("databaseKey", "DATABASE_URL"),
                proxy_target_key=raw.get("proxyTargetKey", "WEB_API_PROXY_TARGET"),
                worktree=r.text(raw["worktree"], (*p, "worktree")) if "worktree" in raw else None,
            )
        )
    check_unique([s.name for s in out], "slots", "name", r)
    return tuple(out)
