"""Function, not liveness: each database at its release's migration head; each API answering real requests.

A health endpoint that answers 200 says the process lives. These checks ask what its users ask: has the
database the migrations the running release expects, and does a read-only request that touches the database
answer as declared, directly and through every proxy route that leads to the API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema

from conformance.checks import check, expect
from conformance.function import ApiRequest, SchemaHead
from conformance.probes.http import HttpGet, HttpResponse, service_request
from conformance.probes.migrations import HeadObservation, HeadProbe, MigrationsTable, TargetCommand
from conformance.profile import Profile, Route, Service


def schema_heads(profile: Profile) -> list[SchemaHead]:
    """Services whose database declares how its migration state is read."""
    return list(profile.schema_heads)


def head_probe(profile: Profile, head: SchemaHead) -> HeadProbe:
    """The two reads of ``head``."""
    pg = profile.service(head.postgres)
    applied: MigrationsTable | TargetCommand
    if head.applied_command is not None:
        applied = TargetCommand(command=head.applied_command, timeout_s=head.timeout_s)
    else:
        assert head.table is not None  # guaranteed by the profile loader, as the column
        assert head.column is not None
        applied = MigrationsTable(
            address=pg.bind,
            port=pg.port,
            dbname=head.database,
            user=pg.db_user or "postgres",
            password=pg.password,
            schema=head.schema,
            table=head.table,
            column=head.column,
        )
    return HeadProbe(
        applied=applied, expected=TargetCommand(command=head.expected_command, timeout_s=head.timeout_s)
    )


@check(
    "db.schema.at_head",
    title="The service's database is at the migration head its running release expects",
    targets=schema_heads,
    observe=head_probe,
    remediation="Run the release's migrations against {name}'s database (e.g. scripts/db-migrate.sh, or restart "
    "an api that migrates on start-up), or deploy the release the database was migrated for.",
)
def test_schema_at_head(target: SchemaHead, obs: HeadObservation) -> None:
    """The set of applied migrations equals the set of heads the running release names: none missing, none
    from another release."""
    where = f"{target.database}" + (f" ({obs.table})" if obs.table else "")
    if not obs.table_found:
        expect(
            False,
            f"{target.service}'s database {target.database!r} has no migrations table {obs.table}: never "
            f"migrated; the release expects {', '.join(obs.expected)}",
            reason="schema_never_migrated",
            observed={"applied": None},
            expected={"applied": list(obs.expected)},
        )
    missing = sorted(set(obs.expected) - set(obs.applied))
    extra = sorted(set(obs.applied) - set(obs.expected))
    detail = "; ".join(
        part
        for part in (
            f"missing {', '.join(missing)}" if missing else "",
            f"not a head of the release {', '.join(extra)}" if extra else "",
        )
        if part
    )
    expect(
        not missing and not extra,
        f"{target.service}'s database {where} is not at the running release's head ({detail}): it records "
        f"{_some(obs.applied)}, the release expects {_some(obs.expected)}",
        reason="schema_behind_head" if missing and not extra else "schema_not_at_head",
        observed={"applied": list(obs.applied), "missing": missing, "unexpected": extra},
        expected={"applied": list(obs.expected)},
    )


def _some(items: tuple[str, ...]) -> str:
    if not items:
        return "no migration"
    return ", ".join(items) if len(items) <= 3 else f"{len(items)} migrations ({items[0]} ... {items[-1]})"


# --- functional requests ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutedRequest:
    """A functional request sent through one proxy route that leads to its API."""

    request: ApiRequest
    route: Route
    proxy: Service

    @property
    def name(self) -> str:
        """``<request>@<route>``: the target in check ids."""
        return f"{self.request.name}@{self.route.name}"


def api_requests(profile: Profile) -> list[ApiRequest]:
    """Every declared functional request, sent directly to its API."""
    return list(profile.requests)


def routed_requests(profile: Profile) -> list[RoutedRequest]:
    """Every functional request, once per proxy route whose upstream is its API."""
    if profile.routes is None:
        return []
    proxy = profile.service(profile.routes.proxy)
    return [
        RoutedRequest(request=q, route=route, proxy=proxy)
        for q in profile.requests
        if q.routed
        for route in profile.routes.hosts
        if route.upstream == q.service
    ]


def direct_request(profile: Profile, q: ApiRequest) -> HttpGet:
    """The request sent to the API as its clients reach it."""
    return service_request(profile.service(q.service), q.path, method=q.method, headers=q.headers)


def proxied_request(_: Profile, rq: RoutedRequest) -> HttpGet:
    """The request sent to the proxy with the route's Host."""
    q = rq.request
    return HttpGet(
        address=rq.proxy.bind,
        port=rq.proxy.port,
        path=q.path,
        method=q.method,
        host_header=rq.route.host,
        headers=q.headers,
    )


def _judge(q: ApiRequest, obs: HttpResponse, via: str) -> None:
    __tracebackhide__ = True
    expect(
        obs.status == q.status,
        f"{q.method} {q.path}{via} answered {obs.status}; expected {q.status}: {obs.body_preview(160)!r}",
        reason="request_status_mismatch",
        observed={"status": obs.status, "body": obs.body_preview(200)},
        expected={"status": q.status},
    )
    try:
        body: Any = json.loads(obs.body)
    except ValueError:
        expect(
            False,
            f"{q.method} {q.path}{via} answered {obs.status} with a body that is not JSON: {obs.body_preview(80)!r}",
            reason="request_body_not_json",
            observed=obs.body_preview(200),
            expected="a JSON body",
        )
        return
    errors = sorted(jsonschema.Draft202012Validator(q.schema()).iter_errors(body), key=lambda e: list(e.path))
    first = errors[0] if errors else None
    expect(
        first is None,
        f"{q.method} {q.path}{via} answered a body that breaks its schema"
        + (f" at /{'/'.join(str(x) for x in first.path)}: {first.message[:200]}" if first else ""),
        reason="request_body_schema_mismatch",
        observed=[f"/{'/'.join(str(x) for x in e.path)}: {e.message[:200]}" for e in errors[:5]],
        expected=q.schema(),
    )


@check(
    "api.request.answers",
    title="A read-only functional request to the API answers with the declared status and body schema",
    targets=api_requests,
    observe=direct_request,
    remediation="The API answers its health route but not this real request: read its log for the error "
    "(an unmigrated database, a wrong DATABASE_URL) and fix what it names.",
)
def test_request_answers(target: ApiRequest, obs: HttpResponse) -> None:
    """The direct answer has the declared status and a JSON body valid under the declared schema."""
    _judge(target, obs, "")


@check(
    "api.route.answers",
    title="The functional request through the proxy route answers like the API should",
    targets=routed_requests,
    observe=proxied_request,
    remediation="Through the proxy the real request does not get the API's answer: check the route for the "
    "host and the API behind it.",
)
def test_routed_request_answers(target: RoutedRequest, obs: HttpResponse) -> None:
    """Through the route, the request gets the declared status and a JSON body valid under the schema."""
    _judge(target.request, obs, f" with Host {target.route.host}")
