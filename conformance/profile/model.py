"""What a loaded profile is: frozen, typed models of every section a deployment declares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from conformance.function import ApiRequest, SchemaHead
from conformance.healthdeps import HealthDrill
from conformance.loops import Loop

JsonScalar = str | int | float | bool | None


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
    gates_at: tuple[str | None, ...] = ()  # where each of ``gates`` is written in the profile file
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
