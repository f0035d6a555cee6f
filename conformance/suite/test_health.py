"""Health: every declared health endpoint answers exactly as declared; datastores answer."""

from __future__ import annotations

import json

from conformance.checks import check, expect
from conformance.errors import Undetermined
from conformance.probes.datastores import PgConnect, PgPing, PgPingResult, PgSession, RedisPing, RedisReply
from conformance.probes.http import HttpGet, HttpResponse, service_request
from conformance.profile import HttpExpectation, Profile, Service
from conformance.suite import _select
from conformance.suite._select import RouteTarget


def _health(svc: Service) -> HttpExpectation:
    assert svc.health is not None  # guaranteed by the target selector
    return svc.health


def health_get(_: Profile, svc: Service) -> HttpGet:
    """The health request of a service, sent directly to it (its ``url`` when declared, else its bind address
    and port)."""
    h = _health(svc)
    return service_request(svc, h.path, method=h.method)


@check(
    "health.http.status_exact",
    title="Health endpoint answers with the declared status",
    targets=_select.http_health,
    observe=health_get,
    remediation="Check that {name} is running and healthy on {bind}:{port} (systemctl status {unit}; journalctl -u {unit}).",
)
def test_status_exact(target: Service, obs: HttpResponse) -> None:
    """The health endpoint's status code equals the declared one."""
    want = _health(target).status
    expect(
        obs.status == want,
        f"GET {obs.url} answered {obs.status}; expected {want}",
        reason="health_status_mismatch",
        observed=obs.status,
        expected=want,
    )


@check(
    "health.http.body_exact",
    title="Health endpoint answers with the declared body, byte for byte",
    targets=_select.health_with_body,
    observe=health_get,
    remediation="{name} answers its health route with an unexpected body: confirm the deployed release "
    "is the one the profile describes.",
)
def test_body_exact(target: Service, obs: HttpResponse) -> None:
    """The health endpoint's body equals the declared body exactly."""
    want = _health(target).body
    got = obs.body.decode("utf-8", errors="replace")
    expect(
        got == want,
        f"GET {obs.url} answered body {got!r}; expected {want!r}",
        reason="health_body_mismatch",
        observed=obs.body_preview(200),
        expected=want,
    )


@check(
    "health.http.content_type",
    title="Health endpoint answers with the declared media type",
    targets=_select.health_with_media_type,
    observe=health_get,
    remediation="{name} serves its health route with the wrong Content-Type: confirm the deployed code.",
    severity="medium",
)
def test_content_type(target: Service, obs: HttpResponse) -> None:
    """The health endpoint's media type equals the declared one."""
    want = _health(target).content_type
    expect(
        obs.media_type == (want or "").lower(),
        f"GET {obs.url} answered Content-Type {obs.header('content-type')!r}; expected {want}",
        reason="health_content_type_mismatch",
        observed=obs.header("content-type"),
        expected=want,
    )


def routed_health(_: Profile, rt: RouteTarget) -> HttpGet:
    """The upstream's health request sent through the proxy with the route's Host."""
    h = _health(rt.upstream)
    return HttpGet(
        address=rt.proxy.bind, port=rt.proxy.port, path=h.path, method=h.method, host_header=rt.route.host
    )


@check(
    "health.route.health_exact",
    title="Health through the reverse proxy answers like the upstream's health",
    targets=_select.health_routes,
    observe=routed_health,
    remediation="Requests for {host} through the proxy do not reach a healthy upstream: check the proxy's "
    "route for {host} and the upstream service.",
)
def test_routed_health_exact(target: RouteTarget, obs: HttpResponse) -> None:
    """Through the proxy, the route's Host gets the upstream's declared health status and body."""
    h = _health(target.upstream)
    got = obs.body.decode("utf-8", errors="replace")
    ok = obs.status == h.status and (h.body is None or got == h.body)
    expect(
        ok,
        f"GET {obs.url} with Host {target.host} answered {obs.status} {got!r}; expected {h.status} {h.body!r}",
        reason="routed_health_mismatch",
        observed={"status": obs.status, "body": obs.body_preview(200)},
        expected={"status": h.status, "body": h.body},
    )


def pg_ping(_: Profile, svc: Service) -> PgPing:
    """``pg_isready`` against the declared database and role."""
    return PgPing(
        address=svc.bind, port=svc.port, dbname=svc.database or "postgres", user=svc.db_user or "postgres"
    )


@check(
    "health.postgres.accepting",
    title="PostgreSQL accepts connections (pg_isready semantics)",
    targets=_select.postgres,
    observe=pg_ping,
    remediation="PostgreSQL on {bind}:{port} answers but rejects connections (starting, shutting down or in "
    "recovery without hot standby): check its log and pg_is_in_recovery().",
)
def test_postgres_accepting(target: Service, obs: PgPingResult) -> None:
    """libpq's ping reports the server as accepting connections."""
    expect(
        obs.status == "accepting",
        f"postgres at {target.bind}:{target.port} is {obs.status}; expected accepting",
        reason="postgres_not_accepting",
        observed=obs.status,
        expected="accepting",
    )


def pg_connect(_: Profile, svc: Service) -> PgConnect:
    """A real login to the declared database."""
    return PgConnect(
        address=svc.bind,
        port=svc.port,
        dbname=svc.database or "postgres",
        user=svc.db_user or "postgres",
        password=svc.password,
        schema=svc.schema,
    )


@check(
    "health.postgres.database_connect",
    title="The declared database exists and the declared role can log in to it",
    targets=_select.postgres,
    observe=pg_connect,
    remediation="Create or restore the declared database, or fix the role's password/pg_hba.conf, so that the "
    "declared role can connect to it on {bind}:{port}.",
)
def test_postgres_database_connect(target: Service, obs: PgSession) -> None:
    """A login as the declared role to the declared database succeeds and lands in that database."""
    ok = obs.connected and obs.database == target.database
    expect(
        ok,
        f"login to {target.database!r} on {target.bind}:{target.port} as {target.db_user!r}: "
        f"{'connected to ' + repr(obs.database) if obs.connected else obs.error}",
        reason="postgres_database_unavailable",
        observed=obs.database if obs.connected else obs.error,
        expected=target.database,
    )


def redis_ping(_: Profile, svc: Service) -> RedisPing:
    """PING the Redis server."""
    return RedisPing(address=svc.bind, port=svc.port, password=svc.password)


@check(
    "health.redis.ping",
    title="Redis answers PING with PONG",
    targets=_select.redis,
    observe=redis_ping,
    remediation="Redis on {bind}:{port} answered PING with an error: check requirepass/ACLs and that it is not "
    "still loading its dataset.",
)
def test_redis_ping(target: Service, obs: RedisReply) -> None:
    """PING is answered with PONG (not with NOAUTH, LOADING or any other error)."""
    got = obs.reply if obs.reply is not None else f"error: {obs.error}"
    expect(
        obs.reply == "PONG",
        f"redis at {target.bind}:{target.port} answered PING with {got!r}; expected 'PONG'",
        reason="redis_ping_failed",
        observed=got,
        expected="PONG",
    )


@check(
    "health.postgres.schema_present",
    title="The declared schema exists in the database and holds tables",
    targets=_select.postgres_with_schema,
    observe=pg_connect,
    remediation="The application's schema is missing or empty in {name}: check the schema setting the "
    "application runs with (e.g. PROXY_PG_SCHEMA) and that its migrations ran.",
)
def test_postgres_schema_present(target: Service, obs: PgSession) -> None:
    """A login to the declared database finds the declared schema with at least one table."""
    if not obs.connected:
        raise Undetermined(
            f"cannot log in to {target.database!r}: {obs.error}; see health.postgres.database_connect"
        )
    tables = obs.schema_tables
    expect(
        tables is not None and tables > 0,
        f"schema {target.schema!r} in {target.database!r} "
        + ("does not exist" if tables is None else "holds no tables"),
        reason="postgres_schema_missing" if tables is None else "postgres_schema_empty",
        observed="missing" if tables is None else ("empty" if tables == 0 else "present"),
        expected="present",
    )


@check(
    "health.http.json_fields",
    title="Health endpoint's JSON body carries the declared members",
    targets=_select.health_with_json,
    observe=health_get,
    remediation="{name}'s health body reports a problem (see the members that differ): fix what they name, "
    "e.g. the database connection behind dbOk.",
)
def test_json_fields(target: Service, obs: HttpResponse) -> None:
    """Each declared top-level member of the JSON health body holds exactly the declared value."""
    want = dict(_health(target).json)
    try:
        body = json.loads(obs.body)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        expect(
            False,
            f"GET {obs.url} answered {obs.status} with a body that is not a JSON object: {obs.body_preview(80)!r}",
            reason="health_body_not_json",
            observed=obs.body_preview(120),
            expected=want,
        )
        return
    got = {k: body.get(k, "<absent>") for k in want}
    wrong = sorted(
        k for k in want if k not in body or body[k] != want[k] or type(body[k]) is not type(want[k])
    )
    expect(
        not wrong,
        f"GET {obs.url} answered {obs.status} with {', '.join(f'{k}={got[k]!r}' for k in wrong)}; "
        f"expected {', '.join(f'{k}={want[k]!r}' for k in wrong)}",
        reason="health_json_mismatch",
        observed=got,
        expected=want,
    )
