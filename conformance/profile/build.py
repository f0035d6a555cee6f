"""From a validated YAML document to a frozen ``Profile``: every section resolved and cross-checked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conformance import function, healthdeps, origins
from conformance.loops import parse_loops
from conformance.profile.fields import (
    check_unique,
    parse_ca_file,
    parse_http,
    parse_regex,
    parse_url,
    url_endpoint,
)
from conformance.profile.model import (
    EnvFile,
    Guardrail,
    ProbeSettings,
    Profile,
    Release,
    Route,
    Routes,
    Service,
    Smoke,
    Timer,
    TimerOutput,
)
from conformance.profile.nooterra import parse_bundle, parse_nooterra, parse_paid_calls
from conformance.profile.resolver import Resolver, resolve_variables
from conformance.profile.runtime import parse_drill, parse_output_status, parse_slots, parse_upgrade_drill
from conformance.yamlsource import PathKey, YamlDocument


def build(doc: YamlDocument, overrides: dict[str, str], environ: Mapping[str, str]) -> Profile:
    data: dict[str, Any] = doc.data
    variables = resolve_variables(doc, overrides, environ)
    r = Resolver(doc, {v.name: v.value for v in variables}, origins.sources(variables))

    probe_raw = data.get("probe") or {}
    defaults = ProbeSettings()
    probe = ProbeSettings(
        connect_timeout_s=r.number(
            probe_raw.get("connectTimeoutSeconds", defaults.connect_timeout_s),
            ("probe", "connectTimeoutSeconds"),
        ),
        read_timeout_s=r.number(
            probe_raw.get("readTimeoutSeconds", defaults.read_timeout_s), ("probe", "readTimeoutSeconds")
        ),
        deadline_s=r.number(
            probe_raw.get("deadlineSeconds", defaults.deadline_s), ("probe", "deadlineSeconds")
        ),
        max_body_bytes=r.integer(
            probe_raw.get("maxBodyBytes", defaults.max_body_bytes),
            ("probe", "maxBodyBytes"),
            low=1,
            high=1 << 30,
        ),
        ca_file=parse_ca_file(r, probe_raw.get("caFile")),
    )

    services: list[Service] = []
    for i, raw in enumerate(data["services"]):
        p: PathKey = ("services", i)
        url = parse_url(r, raw["url"], (*p, "url")) if "url" in raw else None
        if url is not None and raw["kind"] != "http":
            raise r.fail((*p, "url"), f"only an http service is reached by URL, not a {raw['kind']} one")
        if "bind" in raw or url is None:
            bind = r.text(raw.get("bind", ""), (*p, "bind"))
            if bind and not origins.is_address(bind):
                raise r.fail((*p, "bind"), f"expected an IP address or host name, got {bind!r}")
        else:
            bind = url_endpoint(url)[0]
        if "port" in raw:
            port = r.integer(raw["port"], (*p, "port"), low=1, high=65535)
        elif url is not None:
            port = url_endpoint(url)[1]
        else:
            port = 0
        services.append(
            Service(
                name=raw["name"],
                kind=raw["kind"],
                role=raw.get("role", raw["kind"]),
                unit=r.opt_text(raw.get("unit"), (*p, "unit")),
                user=r.account(raw.get("user"), (*p, "user")),
                bind=bind,
                port=port,
                url=url,
                env_file=raw.get("envFile"),
                group=r.account(raw.get("group"), (*p, "group")),
                hardening=tuple(
                    (k, r.text(v, (*p, "hardening", k))) for k, v in (raw.get("hardening") or {}).items()
                ),
                runs_from_release=bool(raw.get("runsFromRelease", False)),
                health=parse_http(r, raw.get("health"), (*p, "health")),
                identity_path=r.opt_text((raw.get("identity") or {}).get("path"), (*p, "identity", "path")),
                database=r.opt_text(raw.get("database"), (*p, "database")),
                db_user=r.opt_text(raw.get("dbUser"), (*p, "dbUser")),
                password=r.opt_text(raw.get("password"), (*p, "password")),
                schema=r.opt_text(raw.get("schema"), (*p, "schema")),
            )
        )
    check_unique([s.name for s in services], "services", "name", r)
    check_unique([f"{s.bind}:{s.port}" for s in services if s.listens], "services", "port", r)

    env_files: list[EnvFile] = []
    for i, raw in enumerate(data.get("envFiles") or []):
        p = ("envFiles", i)
        values = tuple((k, r.text(v, (*p, "values", k))) for k, v in (raw.get("values") or {}).items())
        env_files.append(
            EnvFile(
                name=raw["name"],
                path=r.target_path(raw["path"], (*p, "path")),
                values=values,
                keys=tuple(raw.get("keys") or ()),
                patterns=tuple(
                    (k, parse_regex(r, v, (*p, "patterns", k)))
                    for k, v in (raw.get("patterns") or {}).items()
                ),
                absent=tuple(raw.get("absent") or ()),
            )
        )
    check_unique([e.name for e in env_files], "envFiles", "name", r)
    env_names = {e.name for e in env_files}
    names = {s.name for s in services}
    for i, svc in enumerate(services):
        if svc.env_file is not None and svc.env_file not in env_names:
            raise r.fail(
                ("services", i, "envFile"), f"envFile {svc.env_file!r} is not declared under envFiles"
            )

    routes: Routes | None = None
    if data.get("routes"):
        raw = data["routes"]
        if raw["proxy"] not in names:
            raise r.fail(("routes", "proxy"), f"proxy {raw['proxy']!r} is not a declared service")
        hosts = []
        for i, h in enumerate(raw["hosts"]):
            if h["upstream"] not in names:
                raise r.fail(
                    ("routes", "hosts", i, "upstream"),
                    f"upstream {h['upstream']!r} is not a declared service",
                )
            host = r.text(h["host"], ("routes", "hosts", i, "host"))
            hosts.append(
                Route(name=h.get("name") or host.split(".", 1)[0], host=host, upstream=h["upstream"])
            )
        check_unique([h.host for h in hosts], "routes.hosts", "host", r)
        check_unique([h.name for h in hosts], "routes.hosts", "name", r)
        unknown = raw.get("unknownHost") or {}
        routes = Routes(
            proxy=raw["proxy"],
            hosts=tuple(hosts),
            unknown_host=r.text(
                unknown.get("host", "gates-unknown-host.invalid"), ("routes", "unknownHost", "host")
            ),
            unknown_status=r.integer(
                unknown.get("status", 404), ("routes", "unknownHost", "status"), low=100, high=599
            ),
            unknown_body=r.opt_text(unknown.get("body"), ("routes", "unknownHost", "body")),
        )

    release: Release | None = None
    if data.get("release"):
        raw = data["release"]
        release = Release(
            name=raw.get("name", "current"),
            current=r.target_path(raw["current"], ("release", "current")),
            releases=r.target_path(raw["releases"], ("release", "releases")),
            drill=parse_drill(r, raw.get("drill"), services),
        )

    timers: list[Timer] = []
    for i, raw in enumerate(data.get("timers") or []):
        p = ("timers", i)
        out_raw = raw.get("output")
        output = None
        if out_raw is not None:
            output = TimerOutput(
                glob=r.text(out_raw["glob"], (*p, "output", "glob")),
                max_age_s=r.integer(
                    out_raw["maxAgeSeconds"], (*p, "output", "maxAgeSeconds"), low=1, high=10**8
                ),
                schema=out_raw.get("schema"),
                status=parse_output_status(r, out_raw.get("status"), (*p, "output", "status")),
            )
        delay = raw.get("randomizedDelaySeconds")
        timers.append(
            Timer(
                name=raw["name"],
                unit=r.text(raw["unit"], (*p, "unit")),
                service=r.text(raw["service"], (*p, "service")),
                on_calendar=r.text(raw["onCalendar"], (*p, "onCalendar")),
                randomized_delay_s=None
                if delay is None
                else r.integer(delay, (*p, "randomizedDelaySeconds"), low=0, high=10**8),
                output=output,
            )
        )
    check_unique([t.name for t in timers], "timers", "name", r)
    guardrails: list[Guardrail] = []
    for i, raw in enumerate(data.get("guardrails") or []):
        p = ("guardrails", i)
        if raw["service"] not in names:
            raise r.fail((*p, "service"), f"service {raw['service']!r} is not a declared service")
        if not any(s.name == raw["service"] and s.env_file and s.unit for s in services):
            raise r.fail(
                (*p, "service"), f"service {raw['service']!r} needs a unit and an envFile to be guarded"
            )
        guardrails.append(
            Guardrail(
                name=raw["name"],
                service=raw["service"],
                writable_paths=tuple(
                    r.text(x, (*p, "writablePaths", j)) for j, x in enumerate(raw["writablePaths"])
                ),
                commands_key=raw["commandsKey"],
                forbidden_commands=tuple(raw["forbiddenCommands"]),
                blocklist_key=raw["envBlocklistKey"],
                allowlist_key=raw["envAllowlistKey"],
                must_block=tuple(raw["mustBlock"]),
            )
        )
    slots = parse_slots(r, data.get("slots") or [], services)
    smoke = [
        Smoke(
            name=raw["name"],
            command=r.text(raw["command"], ("smoke", i, "command")),
            preview_urls=tuple(
                r.text(u, ("smoke", i, "previewUrls", j)) for j, u in enumerate(raw["previewUrls"])
            ),
            proxy_origin=r.opt_text(raw.get("proxyOrigin"), ("smoke", i, "proxyOrigin")),
            failing_route=r.text(
                raw.get("failingRoute", "/gates-smoke-missing.txt"), ("smoke", i, "failingRoute")
            ),
            timeout_s=int(raw.get("timeoutSeconds", 8)),
        )
        for i, raw in enumerate(data.get("smoke") or [])
    ]
    check_unique([s.name for s in smoke], "smoke", "name", r)
    process_manager = r.text(data.get("processManager", "systemd"), ("processManager",))
    if process_manager not in ("systemd", "none"):
        raise r.fail(
            ("processManager",), f"processManager must be 'systemd' or 'none', got {process_manager!r}"
        )
    container_runtime = data.get("containerRuntime", "allowed")  # the schema admits only the two values
    bundle = parse_bundle(r, data.get("bundle"))
    return Profile(
        container_runtime=container_runtime,
        slots=slots,
        smoke=tuple(smoke),
        serving_mode=r.opt_text(data.get("servingMode"), ("servingMode",)),
        bundle=bundle,
        nooterra=parse_nooterra(r, data.get("nooterra"), services, env_files, bundle),
        upgrade_drill=parse_upgrade_drill(r, data.get("upgradeDrill"), services),
        paid_calls=parse_paid_calls(r, data.get("paidCalls") or []),
        health_drill=healthdeps.parse(r, data.get("healthDrill"), services, routes),
        loops=parse_loops(r, data.get("loops") or [], {s.name: s.kind for s in services}),
        schema_heads=function.schema_heads(r, data.get("schemaHeads") or [], services),
        requests=function.api_requests(r, data.get("requests") or [], services),
        guardrails=tuple(guardrails),
        timers=tuple(timers),
        process_manager=process_manager,
        name=data["name"],
        title=data.get("title", data["name"]),
        source=doc.source,
        sha256=doc.sha256,
        gates=tuple(data.get("gates") or ()),
        gates_at=tuple(doc.locate(("gates", i)) for i in range(len(data.get("gates") or ()))),
        variables=variables,
        probe=probe,
        services=tuple(services),
        env_files=tuple(env_files),
        routes=routes,
        release=release,
    )
