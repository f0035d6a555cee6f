"""Deployment profiles: what a deployment declares, loaded once and then frozen.

A profile is a YAML file validated against ``schemas/profile.schema.json``. Strings may
reference variables as ``${name}``; a variable's value comes from its default, then from the
environment variable it names (for secrets), then from ``--set name=value``.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from conformance import _schemas, function, healthdeps, origins
from conformance.errors import ConfigError
from conformance.function import ApiRequest, SchemaHead
from conformance.healthdeps import HealthDrill
from conformance.loops import Loop, parse_loops
from conformance.yamlsource import PathKey, YamlDocument, load_yaml

JsonScalar = str | int | float | bool | None

BUILTIN_DIR = Path(__file__).resolve().parent / "profiles"
_VAR = re.compile(r"\$\{([A-Za-z0-9_.-]+)\}|\$\$")
_ACCOUNT = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?|[0-9]{1,10}")
_SET = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*)=(.*)$", re.DOTALL)

ServiceKind = Literal["http", "postgres", "redis", "proxy", "tcp", "process"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Variable:
    """A resolved profile variable."""

    name: str
    value: str
    secret: bool
    origin: Literal["default", "environment", "argument"]
    default: str = ""  # as declared (it may refer to earlier variables)
    env: str | None = None  # the environment variable it is read from, if any
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeSettings:
    """Bounds every network probe obeys."""

    connect_timeout_s: float = 1.0
    read_timeout_s: float = 2.0
    deadline_s: float = 4.0
    max_body_bytes: int = 1_048_576
    # PEM file of extra CA certificates HTTPS probes trust besides the system's (an internal CA).
    ca_file: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpExpectation:
    """The declared answer of an HTTP endpoint."""

    method: str
    path: str
    status: int
    body: str | None
    content_type: str | None
    # Top-level members of a JSON body that must hold exactly these values (e.g. ok: true).
    json: tuple[tuple[str, JsonScalar], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    """One declared service of the deployment."""

    name: str
    kind: ServiceKind
    role: str
    unit: str | None
    user: str | None
    bind: str
    port: int
    env_file: str | None
    health: HttpExpectation | None
    identity_path: str | None
    database: str | None = None
    db_user: str | None = None
    password: str | None = None
    schema: str | None = None
    group: str | None = None
    hardening: tuple[tuple[str, str], ...] = ()
    runs_from_release: bool = False
    # http: the base URL its clients use (https: TLS verified for the URL's host). Its HTTP checks
    # go there; bind and port stay where it listens on the host (derived from the URL if not given).
    url: str | None = None

    @property
    def listens(self) -> bool:
        """Whether it serves on a TCP port (a ``process`` service, such as a maintenance loop, does not)."""
        return self.kind != "process"


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvFile:
    """An environment file and the key/values it must carry."""

    name: str
    path: str
    values: tuple[tuple[str, str], ...]
    keys: tuple[str, ...]
    # key -> regular expression its value must match in full (e.g. HOLDBACK_BPS in 0..10000)
    patterns: tuple[tuple[str, str], ...] = ()
    # keys that must not be assigned at all (e.g. a legacy all-scopes token)
    absent: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """A reverse-proxy host route; ``name`` is its target name in check ids."""

    name: str
    host: str
    upstream: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Routes:
    """The reverse proxy, its host routes and its answer to an unknown Host."""

    proxy: str
    hosts: tuple[Route, ...]
    unknown_host: str
    unknown_status: int
    unknown_body: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Drill:
    """How to exercise the deploy and rollback path on the target, and what it touches."""

    deploy: str  # command template, {release} = the shell-quoted release id
    rollback: str
    candidate: str  # a release that passes the health gate
    broken: str  # a release that fails it
    registry_service: str
    registry_table: str
    units: tuple[str, ...]
    complete_marker: str
    timeout_s: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Release:
    """The atomic release symlink layout."""

    name: str
    current: str
    releases: str
    drill: Drill | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpgradeDrill:
    """How to rehearse an upgrade on a scratch copy of one PostgreSQL schema (see `conformance.probes.pgdrill`)."""

    service: str  # the postgres service; also the check target's name
    schema: str
    migrate: str  # empty: no drill declared
    rollback: str
    migrations_table: str
    migrations_column: str
    scratch_database: str  # empty: the service's database
    scratch_schema: str  # empty: the default scratch schema
    pg_bindir: str
    live_tables: tuple[str, ...]
    source_release: str
    target_release: str
    schema_env: str
    url_env: str
    timeout_s: int

    @property
    def name(self) -> str:
        """The drill's target name: its postgres service."""
        return self.service


@dataclass(frozen=True, slots=True, kw_only=True)
class Slot:
    """A preview slot: a web surface proxying /api to its own api, bound to its own database."""

    name: str
    web: str
    api: str
    database: str
    host: str
    api_probe: str
    database_key: str
    proxy_target_key: str
    worktree: str | None = None  # the api runs from inside this git worktree


@dataclass(frozen=True, slots=True, kw_only=True)
class Smoke:
    """A smoke/E2E harness whose command-line contract is certified."""

    name: str
    command: str
    preview_urls: tuple[str, ...]
    proxy_origin: str | None
    failing_route: str
    timeout_s: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputStatus:
    """Where a job's output reports its own outcome: a top-level field and the values that mean success."""

    field: str
    ok: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerOutput:
    """A file a scheduled job writes."""

    glob: str
    max_age_s: int
    schema: str | None
    status: OutputStatus | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Timer:
    """A scheduled job: the timer, the service it starts, its schedule and its output."""

    name: str
    unit: str
    service: str
    on_calendar: str
    randomized_delay_s: int | None
    output: TimerOutput | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Guardrail:
    """The confinement a service that runs untrusted work must keep."""

    name: str
    service: str
    writable_paths: tuple[str, ...]
    commands_key: str
    forbidden_commands: tuple[str, ...]
    blocklist_key: str
    allowlist_key: str
    must_block: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleFile:
    """One named file of a deployment bundle, as a path on the target."""

    name: str
    path: str
    max_age_s: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    """A deployment bundle: named files on the target (topology, env example, charts, runbooks, reports)."""

    root: str
    files: tuple[BundleFile, ...]
    name: str = "bundle"

    def file(self, key: str) -> BundleFile | None:
        """The file declared as ``key``, if any."""
        for f in self.files:
            if f.name == key:
                return f
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitProbe:
    """A bounded burst that must meet the API's rate limit: a 429 with ``retry-after``, never a 5xx.

    ``authenticated``: the burst carries the ops token (needed only for a route that is not public).
    """

    path: str
    tenant: str
    max_requests: int
    authenticated: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class HostedEvidence:
    """What the hosted-baseline evidence records beyond the observations, and how it is signed.

    ``signing_key_file`` is an Ed25519 private key (PKCS#8 PEM) read on the machine running gates;
    its content never enters a report.
    """

    environment: str | None = None
    signing_key_file: str | None = None
    signature_key_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NooterraApi:
    """How the suite talks to a Nooterra API and which of its controls it must observe.

    Service fields name declared services; ``env_file`` names the API's declared env file;
    ``alert_rules`` names a bundle file. ``ops_token`` and ``finance_token`` are secrets (scrubbed
    from reports); the billing catalog is read with ``finance_token``, else with ``ops_token``.
    """

    api: str
    tenant: str
    ops_token: str
    env_file: str | None
    maintenance: str | None
    maintenance_kinds: tuple[str, ...]
    maintenance_max_age_s: int
    required_metrics: tuple[str, ...]
    max_ops_tokens: int
    on_demand_series: tuple[str, ...] = ()  # exported only once there is something to count
    rate_limit: RateLimitProbe | None
    alert_rules: str | None
    staging_env_file: str | None
    paid_upstream: str | None
    paid_route: str | None
    finance_token: str = ""
    hosted: HostedEvidence = field(default_factory=HostedEvidence)

    @property
    def billing_token(self) -> str:
        """The token the billing catalog is read with (it needs finance_read)."""
        return self.finance_token or self.ops_token


@dataclass(frozen=True, slots=True, kw_only=True)
class PaidCall:
    """A paid tool route certified end to end through an x402 gateway (it spends money when it runs)."""

    name: str
    gateway: str  # base URL of the x402 gateway
    path: str  # path and query, as declared
    api: str  # base URL of the API (gate state, receipts, NooterraPay keyset)
    upstream: str  # base URL of the provider as the gateway calls it: its host is the request-binding host
    provider_keyset: str  # URL of the provider's keyset, obtained out of band
    pinned_key_ids: tuple[str, ...]
    holdback_bps: int
    tenant: str = "tenant_default"
    ops_token: str | None = None
    run_param: str = ""  # query parameter given a value unique to each run (empty: the path as declared)
    visibility_budget_s: float = 3.0  # how long a just-written gate or receipt may take to show


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """A deployment profile with every variable resolved."""

    name: str
    title: str
    source: str
    sha256: str
    gates: tuple[str, ...]
    variables: tuple[Variable, ...]
    probe: ProbeSettings
    services: tuple[Service, ...]
    env_files: tuple[EnvFile, ...]
    routes: Routes | None
    release: Release | None
    process_manager: str = "systemd"
    # Whether the topology forbids a container runtime on the host (Oroboros: host processes under
    # systemd only) or allows one (Nooterra self-host runs on Docker Compose or Kubernetes).
    container_runtime: Literal["forbidden", "allowed"] = "allowed"
    timers: tuple[Timer, ...] = ()
    guardrails: tuple[Guardrail, ...] = ()
    slots: tuple[Slot, ...] = ()
    smoke: tuple[Smoke, ...] = ()
    serving_mode: str | None = None
    bundle: Bundle | None = None
    nooterra: NooterraApi | None = None
    upgrade_drill: UpgradeDrill | None = None
    paid_calls: tuple[PaidCall, ...] = ()
    health_drill: HealthDrill | None = None
    loops: tuple[Loop, ...] = ()
    schema_heads: tuple[SchemaHead, ...] = ()  # conformance.function: migrations at the release's head
    requests: tuple[ApiRequest, ...] = ()  # conformance.function: read-only functional requests per API

    def service(self, name: str) -> Service:
        """Return the service called ``name``."""
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(name)

    def secrets(self) -> frozenset[str]:
        """Secret values supplied from outside the profile (environment or ``--set``).

        A secret variable's default is written in the profile itself, so it is no secret;
        everything supplied at run time is scrubbed from artifacts by value.
        """
        return frozenset(v.value for v in self.variables if v.secret and v.value and v.origin != "default")

    def public_variables(self) -> dict[str, str]:
        """Resolved variables with secret values masked, for reports."""
        return {
            v.name: ("<redacted>" if v.secret else v.value)
            for v in sorted(self.variables, key=lambda v: v.name)
        }


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped with the suite."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def resolve_profile_path(name_or_path: str) -> tuple[Path, str]:
    """Map a built-in name or a file path to ``(path, display name)``."""
    candidate = BUILTIN_DIR / f"{name_or_path}.yaml"
    if "/" not in name_or_path and not name_or_path.endswith((".yaml", ".yml")) and candidate.is_file():
        return candidate, f"builtin:{name_or_path}"
    path = Path(name_or_path)
    if path.is_file():
        return path, str(path)
    raise ConfigError(
        f"unknown profile {name_or_path!r}: not a built-in ({', '.join(builtin_profiles())}) "
        "and no such file",
        source="<argument --profile>",
    )


def parse_sets(pairs: Iterable[str]) -> dict[str, str]:
    """Parse ``--set name=value`` arguments."""
    out: dict[str, str] = {}
    for pair in pairs:
        match = _SET.match(pair)
        if not match:
            raise ConfigError(f"expected NAME=VALUE, got {pair!r}", source="<argument --set>")
        out[match.group(1)] = match.group(2)
    return out


def load_profile(
    name_or_path: str, overrides: Mapping[str, str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Profile:
    """Load, validate and resolve a profile. Every problem is a `ConfigError` naming file and line."""
    path, display = resolve_profile_path(name_or_path)
    doc = load_yaml(path, source=display)
    _schemas.validate(doc.data, "profile", source=display, locate=doc.locate)
    return _build(doc, dict(overrides or {}), os.environ if environ is None else environ)


class _Resolver:
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


def _variables(
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


def _http(r: _Resolver, raw: Mapping[str, Any] | None, path: PathKey) -> HttpExpectation | None:
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


def _build(doc: YamlDocument, overrides: dict[str, str], environ: Mapping[str, str]) -> Profile:
    data: dict[str, Any] = doc.data
    variables = _variables(doc, overrides, environ)
    r = _Resolver(doc, {v.name: v.value for v in variables}, origins.sources(variables))

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
        ca_file=_ca_file(r, probe_raw.get("caFile")),
    )

    services: list[Service] = []
    for i, raw in enumerate(data["services"]):
        p: PathKey = ("services", i)
        url = _url(r, raw["url"], (*p, "url")) if "url" in raw else None
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
                health=_http(r, raw.get("health"), (*p, "health")),
                identity_path=r.opt_text((raw.get("identity") or {}).get("path"), (*p, "identity", "path")),
                database=r.opt_text(raw.get("database"), (*p, "database")),
                db_user=r.opt_text(raw.get("dbUser"), (*p, "dbUser")),
                password=r.opt_text(raw.get("password"), (*p, "password")),
                schema=r.opt_text(raw.get("schema"), (*p, "schema")),
            )
        )
    _unique([s.name for s in services], "services", "name", r)
    _unique([f"{s.bind}:{s.port}" for s in services if s.listens], "services", "port", r)

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
                    (k, _regex(r, v, (*p, "patterns", k))) for k, v in (raw.get("patterns") or {}).items()
                ),
                absent=tuple(raw.get("absent") or ()),
            )
        )
    _unique([e.name for e in env_files], "envFiles", "name", r)
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
        _unique([h.host for h in hosts], "routes.hosts", "host", r)
        _unique([h.name for h in hosts], "routes.hosts", "name", r)
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
            drill=_drill(r, raw.get("drill"), services),
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
                status=_output_status(r, out_raw.get("status"), (*p, "output", "status")),
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
    _unique([t.name for t in timers], "timers", "name", r)
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
    slots = _slots(r, data.get("slots") or [], services)
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
    _unique([s.name for s in smoke], "smoke", "name", r)
    process_manager = r.text(data.get("processManager", "systemd"), ("processManager",))
    if process_manager not in ("systemd", "none"):
        raise r.fail(
            ("processManager",), f"processManager must be 'systemd' or 'none', got {process_manager!r}"
        )
    container_runtime = data.get("containerRuntime", "allowed")  # the schema admits only the two values
    bundle = _bundle(r, data.get("bundle"))
    return Profile(
        container_runtime=container_runtime,
        slots=slots,
        smoke=tuple(smoke),
        serving_mode=r.opt_text(data.get("servingMode"), ("servingMode",)),
        bundle=bundle,
        nooterra=_nooterra(r, data.get("nooterra"), services, env_files, bundle),
        upgrade_drill=_upgrade_drill(r, data.get("upgradeDrill"), services),
        paid_calls=_paid_calls(r, data.get("paidCalls") or []),
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
        variables=variables,
        probe=probe,
        services=tuple(services),
        env_files=tuple(env_files),
        routes=routes,
        release=release,
    )


def _output_status(r: _Resolver, raw: Mapping[str, Any] | None, path: PathKey) -> OutputStatus | None:
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


def _drill(r: _Resolver, raw: Mapping[str, Any] | None, services: Sequence[Service]) -> Drill | None:
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


def _upgrade_drill(
    r: _Resolver, raw: Mapping[str, Any] | None, services: Sequence[Service]
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


def _slots(r: _Resolver, raws: Sequence[Mapping[str, Any]], services: Sequence[Service]) -> tuple[Slot, ...]:
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
    _unique([s.name for s in out], "slots", "name", r)
    return tuple(out)


def _bundle(r: _Resolver, raw: Mapping[str, Any] | None) -> Bundle | None:
    """Resolve the bundle's files; a relative path lies under its root."""
    if raw is None:
        return None
    root = r.text(raw["root"], ("bundle", "root"))
    files = []
    for key, spec in raw["files"].items():
        p: PathKey = ("bundle", "files", key)
        if isinstance(spec, Mapping):
            path = r.text(spec["path"], (*p, "path"))
            max_age = spec.get("maxAgeSeconds")
            age = None if max_age is None else r.integer(max_age, (*p, "maxAgeSeconds"), low=1, high=10**9)
        else:
            path, age = r.text(spec, p), None
        if not path:
            raise r.fail(p, f"bundle file {key!r} has an empty path")
        files.append(BundleFile(name=key, path=posixpath.join(root, path), max_age_s=age))
    return Bundle(root=root, files=tuple(files))


_KEY_ID = re.compile(r"^key_[0-9a-f]{24}$")


def url_endpoint(url: str) -> tuple[str, int]:
    """Host and port an http(s) URL connects to (the scheme's default port when it names none)."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def _ca_file(r: _Resolver, raw: Any) -> str | None:
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


def _url(r: _Resolver, raw: Any, path: PathKey, *, base: bool = True) -> str:
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


def _run_param(r: _Resolver, raw: Any, path: PathKey) -> str:
    name = r.text(raw, path).strip()
    if name and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise r.fail(
            path, f"runParam must be a query parameter name (a letter, then letters, digits, _), got {name!r}"
        )
    return name


def _paid_calls(r: _Resolver, raws: Sequence[Mapping[str, Any]]) -> tuple[PaidCall, ...]:
    out = []
    for i, raw in enumerate(raws):
        p: PathKey = ("paidCalls", i)
        path = r.text(raw["path"], (*p, "path"))
        if not path.startswith("/"):
            raise r.fail((*p, "path"), f"the paid route must start with '/', got {path!r}")
        pins = tuple(
            k.strip()
            for k in r.text(raw.get("pinnedProviderKeys", ""), (*p, "pinnedProviderKeys")).split(",")
            if k.strip()
        )
        for key in pins:
            if not _KEY_ID.match(key):
                raise r.fail(
                    (*p, "pinnedProviderKeys"), f"{key!r} is not a provider key id (key_ followed by 24 hex)"
                )
        token = r.text(raw.get("opsToken", ""), (*p, "opsToken")).strip()
        out.append(
            PaidCall(
                name=raw["name"],
                gateway=_url(r, raw["gateway"], (*p, "gateway")),
                path=path,
                api=_url(r, raw["api"], (*p, "api")),
                upstream=_url(r, raw["upstream"], (*p, "upstream")),
                provider_keyset=_url(r, raw["providerKeyset"], (*p, "providerKeyset"), base=False),
                pinned_key_ids=pins,
                holdback_bps=r.integer(raw.get("holdbackBps", 0), (*p, "holdbackBps"), low=0, high=10_000),
                tenant=r.text(raw.get("tenant", "tenant_default"), (*p, "tenant")) or "tenant_default",
                ops_token=token or None,
                run_param=_run_param(r, raw.get("runParam", ""), (*p, "runParam")),
                visibility_budget_s=r.integer(
                    raw.get("visibilityBudgetSeconds", 3), (*p, "visibilityBudgetSeconds"), low=0, high=600
                ),
            )
        )
    _unique([c.name for c in out], "paidCalls", "name", r)
    return tuple(out)


def _unique(values: Sequence[str], where: str, what: str, r: _Resolver) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise r.fail((*where.split("."), i), f"duplicate {what} {value!r} in {where}")
        seen.add(value)


def _regex(r: _Resolver, raw: Any, path: PathKey) -> str:
    text = r.text(raw, path)
    try:
        re.compile(text)
    except re.error as exc:
        raise r.fail(path, f"not a valid regular expression: {exc}") from None
    return text


def _nooterra(
    r: _Resolver,
    raw: Mapping[str, Any] | None,
    services: Sequence[Service],
    env_files: Sequence[EnvFile],
    bundle: Bundle | None,
) -> NooterraApi | None:
    if raw is None:
        return None
    p: PathKey = ("nooterra",)
    by_name = {s.name: s for s in services}

    def service(key: str, *, kinds: tuple[str, ...]) -> str | None:
        name = raw.get(key)
        if name is None:
            return None
        svc = by_name.get(name)
        if svc is None or svc.kind not in kinds:
            raise r.fail((*p, key), f"{key} must name a declared {' or '.join(kinds)} service, got {name!r}")
        return str(name)

    api = service("api", kinds=("http",))
    assert api is not None  # required by the schema
    env_file = raw.get("envFile")
    if env_file is not None and env_file not in {e.name for e in env_files}:
        raise r.fail((*p, "envFile"), f"envFile {env_file!r} is not declared under envFiles")
    alert_rules = raw.get("alertRules")
    if alert_rules is not None and (bundle is None or bundle.file(alert_rules) is None):
        raise r.fail((*p, "alertRules"), f"alertRules {alert_rules!r} is not a file of the bundle")
    maintenance = raw.get("maintenance") or {}
    probe = raw.get("rateLimitProbe")
    rate_limit = None
    if probe is not None:
        authenticated = probe.get("authenticated", False)
        if not isinstance(authenticated, bool):
            raise r.fail((*p, "rateLimitProbe", "authenticated"), "authenticated must be true or false")
        rate_limit = RateLimitProbe(
            authenticated=authenticated,
            path=r.text(probe.get("path", "/capabilities"), (*p, "rateLimitProbe", "path")),
            tenant=r.text(probe.get("tenant", "tenant_gates_rate_probe"), (*p, "rateLimitProbe", "tenant")),
            max_requests=r.integer(
                probe.get("maxRequests", 120), (*p, "rateLimitProbe", "maxRequests"), low=1, high=10_000
            ),
        )
    paid = raw.get("paidUpstream") or {}
    staging = r.opt_text(raw.get("stagingEnvFile"), (*p, "stagingEnvFile"))
    return NooterraApi(
        api=api,
        tenant=r.text(raw.get("tenant", "tenant_default"), (*p, "tenant")),
        ops_token=r.text(raw.get("opsToken", ""), (*p, "opsToken")),
        env_file=env_file,
        maintenance=service_name(r, maintenance.get("service"), by_name, (*p, "maintenance", "service")),
        maintenance_kinds=tuple(maintenance.get("kinds") or ()),
        maintenance_max_age_s=r.integer(
            maintenance.get("maxAgeSeconds", 900), (*p, "maintenance", "maxAgeSeconds"), low=1, high=10**8
        ),
        required_metrics=tuple(raw.get("requiredMetrics") or ()),
        on_demand_series=tuple(raw.get("onDemandSeries") or ()),
        max_ops_tokens=r.integer(raw.get("maxOpsTokens", 8), (*p, "maxOpsTokens"), low=1, high=10_000),
        rate_limit=rate_limit,
        alert_rules=alert_rules,
        staging_env_file=staging or None,
        paid_upstream=service_name(r, paid.get("service"), by_name, (*p, "paidUpstream", "service")),
        paid_route=r.opt_text(paid.get("route"), (*p, "paidUpstream", "route")),
        finance_token=r.text(raw.get("financeToken", ""), (*p, "financeToken")),
        hosted=_hosted_evidence(r, raw.get("hostedBaseline") or {}, (*p, "hostedBaseline")),
    )


def _hosted_evidence(r: _Resolver, raw: Mapping[str, Any], p: PathKey) -> HostedEvidence:
    values = {
        key: (r.opt_text(raw.get(key), (*p, key)) or "").strip() or None
        for key in ("environment", "signingKeyFile", "signatureKeyId")
    }
    if values["signatureKeyId"] and not values["signingKeyFile"]:
        raise r.fail((*p, "signatureKeyId"), "a signature key id needs a signing key file (signingKeyFile)")
    return HostedEvidence(
        environment=values["environment"],
        signing_key_file=values["signingKeyFile"],
        signature_key_id=values["signatureKeyId"],
    )


def service_name(r: _Resolver, name: Any, by_name: Mapping[str, Service], path: PathKey) -> str | None:
    """``name`` when it names a declared service (None stays None); a located error otherwise."""
    if name is None:
        return None
    if name not in by_name:
        raise r.fail(path, f"{name!r} is not a declared service")
    return str(name)
