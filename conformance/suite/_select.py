"""Which targets of a profile each check applies to."""

from __future__ import annotations

from dataclasses import dataclass

from conformance.profile import (
    EnvFile,
    Guardrail,
    Profile,
    Release,
    Route,
    Service,
    Slot,
    Smoke,
    Timer,
    UpgradeDrill,
)


def http_health(profile: Profile) -> list[Service]:
    """HTTP services that declare a health endpoint."""
    return [s for s in profile.services if s.kind == "http" and s.health is not None]


def health_with_body(profile: Profile) -> list[Service]:
    """HTTP services whose health body is declared exactly."""
    return [s for s in http_health(profile) if s.health is not None and s.health.body is not None]


def health_with_media_type(profile: Profile) -> list[Service]:
    """HTTP services whose health content type is declared."""
    return [s for s in http_health(profile) if s.health is not None and s.health.content_type is not None]


def health_with_json(profile: Profile) -> list[Service]:
    """HTTP services whose health body must carry declared JSON members."""
    return [s for s in http_health(profile) if s.health is not None and s.health.json]


def postgres(profile: Profile) -> list[Service]:
    """PostgreSQL services."""
    return [s for s in profile.services if s.kind == "postgres"]


def postgres_with_schema(profile: Profile) -> list[Service]:
    """PostgreSQL services that declare an application schema."""
    return [s for s in postgres(profile) if s.schema is not None]


def redis(profile: Profile) -> list[Service]:
    """Redis services."""
    return [s for s in profile.services if s.kind == "redis"]


def all_services(profile: Profile) -> list[Service]:
    """Every declared service that listens on a port."""
    return [s for s in profile.services if s.listens]


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteTarget:
    """A host route together with the services it involves."""

    route: Route
    proxy: Service
    upstream: Service
    others: tuple[Service, ...]

    @property
    def name(self) -> str:
        """The route's name: its target in check ids."""
        return self.route.name

    @property
    def host(self) -> str:
        """The Host header the route matches."""
        return self.route.host


def routes(profile: Profile) -> list[RouteTarget]:
    """Every declared host route."""
    if profile.routes is None:
        return []
    proxy = profile.service(profile.routes.proxy)
    upstream_names = {r.upstream for r in profile.routes.hosts}
    out = []
    for route in profile.routes.hosts:
        upstream = profile.service(route.upstream)
        others = tuple(profile.service(n) for n in sorted(upstream_names) if n != route.upstream)
        out.append(RouteTarget(route=route, proxy=proxy, upstream=upstream, others=others))
    return out


def identity_routes(profile: Profile) -> list[RouteTarget]:
    """Routes whose upstream declares an identity path."""
    return [r for r in routes(profile) if r.upstream.identity_path is not None]


def health_routes(profile: Profile) -> list[RouteTarget]:
    """Routes whose upstream declares a health endpoint."""
    return [r for r in routes(profile) if r.upstream.health is not None]


def proxies(profile: Profile) -> list[Service]:
    """The reverse proxy, when the profile declares routes."""
    return [profile.service(profile.routes.proxy)] if profile.routes is not None else []


def env_files(profile: Profile) -> list[EnvFile]:
    """Every declared environment file."""
    return list(profile.env_files)


def env_files_with_patterns(profile: Profile) -> list[EnvFile]:
    """Environment files that declare value patterns."""
    return [e for e in profile.env_files if e.patterns]


def env_files_with_absent(profile: Profile) -> list[EnvFile]:
    """Environment files that declare forbidden keys."""
    return [e for e in profile.env_files if e.absent]


def releases(profile: Profile) -> list[Release]:
    """The release symlink layout, when declared."""
    return [profile.release] if profile.release is not None else []


def units(profile: Profile) -> list[Service]:
    """Services run by a declared systemd unit (when the profile says systemd manages them)."""
    if profile.process_manager != "systemd":
        return []
    return [s for s in profile.services if s.unit]


def unit_identities(profile: Profile) -> list[Service]:
    """Units whose user (and group) is declared."""
    return [s for s in units(profile) if s.user]


def hardened_units(profile: Profile) -> list[Service]:
    """Units that declare a sandboxing set."""
    return [s for s in units(profile) if s.hardening]


def units_with_env_file(profile: Profile) -> list[Service]:
    """Units that declare an environment file."""
    return [s for s in units(profile) if s.env_file]


def listener_users(profile: Profile) -> list[Service]:
    """Services with a declared user and a port that no systemd unit check covers (read from /proc instead)."""
    return [
        s
        for s in profile.services
        if s.user and s.port and (profile.process_manager != "systemd" or not s.unit)
    ]


def release_runners(profile: Profile) -> list[Service]:
    """Services that must run the code of the current release."""
    return [s for s in profile.services if s.runs_from_release] if profile.release is not None else []


def timers(profile: Profile) -> list[Timer]:
    """Scheduled jobs (systemd timers; none where no service manager runs the deployment)."""
    return list(profile.timers) if profile.process_manager == "systemd" else []


def timer_outputs(profile: Profile) -> list[Timer]:
    """Scheduled jobs that declare an output file (read as files, with or without a service manager)."""
    return [t for t in profile.timers if t.output is not None]


@dataclass(frozen=True, slots=True, kw_only=True)
class HostTarget:
    """The host the deployment runs on, as a whole."""

    name: str = "host"


def container_free_host(profile: Profile) -> list[HostTarget]:
    """The deployment's host, where the profile forbids a container runtime on it."""
    return [HostTarget()] if profile.container_runtime == "forbidden" else []


def guardrails(profile: Profile) -> list[Guardrail]:
    """Confined services (their units and env files; none where no service manager runs them)."""
    return list(profile.guardrails) if profile.process_manager == "systemd" else []


def guardrail_envs(profile: Profile) -> list[Guardrail]:
    """Confined services whose env file the guardrail rules read (files only: any process manager)."""
    return [g for g in profile.guardrails if profile.service(g.service).env_file]


def slots(profile: Profile) -> list[Slot]:
    """Preview slots."""
    return list(profile.slots)


def slot_worktrees(profile: Profile) -> list[Slot]:
    """Preview slots whose api runs from a declared git worktree."""
    return [s for s in profile.slots if s.worktree is not None]


def smoke_harnesses(profile: Profile) -> list[Smoke]:
    """Smoke/E2E harnesses whose contract is certified."""
    return list(profile.smoke)


def drills(profile: Profile) -> list[Release]:
    """The release layout, when it declares a deploy/rollback drill."""
    return [profile.release] if profile.release is not None and profile.release.drill is not None else []


def upgrade_drills(profile: Profile) -> list[UpgradeDrill]:
    """The upgrade drill on the declared PostgreSQL schema, when the profile names a migrate command."""
    drill = profile.upgrade_drill
    return [drill] if drill is not None and drill.migrate else []
