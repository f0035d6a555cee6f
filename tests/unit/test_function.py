"""Unit tests for schema heads and functional requests: the profile model, the command probe and the checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import testinfra

from conformance.checks import CheckFailed
from conformance.errors import ConfigError, Undetermined
from conformance.function import SchemaHead, head_lines
from conformance.probes.base import Context
from conformance.probes.http import HttpResponse
from conformance.probes.migrations import HeadObservation, HeadProbe, MigrationsTable, TargetCommand
from conformance.profile import ProbeSettings, load_profile
from conformance.suite import test_function as checks

HEADER = """schemaVersion: gates.profile/v1
name: sample
services:
  - {name: api, kind: http, bind: 127.0.0.1, port: 8000}
  - {name: proxy, kind: proxy, bind: 127.0.0.1, port: 8088}
  - {name: db, kind: postgres, bind: 127.0.0.1, port: 5432, database: control, dbUser: app}
routes:
  proxy: proxy
  hosts:
    - {host: api.example.com, upstream: api}
    - {host: api2.example.com, upstream: api}
"""
HEAD = """schemaHeads:
  - service: api
    postgres: db
    applied: {table: alembic_version, column: version_num}
    expected: {command: "${cmd}"}
variables:
  cmd: {default: "alembic heads"}
"""
REQUEST = """requests:
  - name: items
    service: api
    path: /api/items
    headers: {x-token: "${token}"}
    bodySchema: {type: array, items: {type: object, required: [id]}}
variables:
  token: {default: t0ken, secret: true}
"""


def write(tmp_path: Path, text: str) -> str:
    """Write a profile file and return its path."""
    path = tmp_path / "profile.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def load_error(path: str, overrides: dict[str, str] | None = None) -> ConfigError:
    """The `ConfigError` loading ``path`` raises."""
    with pytest.raises(ConfigError) as info:
        load_profile(path, overrides)
    return info.value


class TestProfile:
    """``schemaHeads`` and ``requests`` as the profile loader reads them."""

    def test_schema_head_from_table(self, tmp_path: Path) -> None:
        """A table and column are read on the named postgres service; the database defaults to its own."""
        (head,) = load_profile(write(tmp_path, HEADER + HEAD)).schema_heads
        assert (head.service, head.postgres, head.database) == ("api", "db", "control")
        assert (head.table, head.column, head.applied_command) == ("alembic_version", "version_num", None)
        assert head.expected_command == "alembic heads"

    def test_schema_head_from_command(self, tmp_path: Path) -> None:
        """A command may print the applied migrations instead of a table."""
        text = HEADER + HEAD.replace(
            "{table: alembic_version, column: version_num}", '{command: "alembic current"}'
        )
        (head,) = load_profile(write(tmp_path, text)).schema_heads
        assert (head.table, head.applied_command) == (None, "alembic current")

    def test_empty_expected_command_declares_nothing(self, tmp_path: Path) -> None:
        """An empty expected command (a variable set empty) declares no schema head."""
        assert load_profile(write(tmp_path, HEADER + HEAD), {"cmd": ""}).schema_heads == ()

    def test_schema_head_needs_a_postgres_service(self, tmp_path: Path) -> None:
        """Naming a service that is not PostgreSQL is a config error at its line."""
        error = load_error(write(tmp_path, HEADER + HEAD.replace("postgres: db", "postgres: api")))
        assert "not a declared postgres service" in str(error)
        assert "line 14" in str(error)
        assert "schemaHeads[0].postgres" in str(error)

    def test_schema_head_table_must_be_an_identifier(self, tmp_path: Path) -> None:
        """A table name that is not an SQL identifier is refused, never interpolated."""
        text = HEADER + HEAD.replace("table: alembic_version", 'table: "x; DROP TABLE y"')
        assert "expected an SQL identifier" in str(load_error(write(tmp_path, text)))

    def test_request(self, tmp_path: Path) -> None:
        """A request keeps its method, status, headers and schema; the headers never reach its repr."""
        (q,) = load_profile(write(tmp_path, HEADER + REQUEST)).requests
        assert (q.name, q.service, q.method, q.path, q.status) == ("items", "api", "GET", "/api/items", 200)
        assert q.headers == (("x-token", "t0ken"),)
        assert "t0ken" not in repr(q)
        assert q.schema() == {"type": "array", "items": {"type": "object", "required": ["id"]}}

    def test_request_with_an_empty_header_declares_nothing(self, tmp_path: Path) -> None:
        """A header that resolves empty (a token the run was not given) declares no request."""
        assert load_profile(write(tmp_path, HEADER + REQUEST), {"token": ""}).requests == ()

    def test_request_schema_must_be_valid(self, tmp_path: Path) -> None:
        """A body schema that is not a valid JSON Schema is a config error."""
        text = HEADER + REQUEST.replace("{type: array,", "{type: 12,")
        assert "not a valid JSON Schema" in str(load_error(write(tmp_path, text)))

    def test_request_must_be_a_get(self, tmp_path: Path) -> None:
        """A method other than GET (a write, or an answer without a body) is refused by the profile schema."""
        text = HEADER + REQUEST.replace("path: /api/items", "path: /api/items\n    method: POST")
        assert "method" in str(load_error(write(tmp_path, text)))

    def test_request_to_a_non_http_service_is_refused(self, tmp_path: Path) -> None:
        """Only an http service answers a request."""
        error = load_error(write(tmp_path, HEADER + REQUEST.replace("service: api", "service: db")))
        assert "not a declared http service" in str(error)

    def test_request_goes_through_every_route_to_its_api(self, tmp_path: Path) -> None:
        """The request is sent directly and once per proxy route whose upstream is its API."""
        profile = load_profile(write(tmp_path, HEADER + REQUEST))
        assert [q.name for q in checks.api_requests(profile)] == ["items"]
        assert [r.name for r in checks.routed_requests(profile)] == ["items@api", "items@api2"]
        spec = checks.proxied_request(profile, checks.routed_requests(profile)[1])
        assert (spec.host_header, spec.path, spec.headers) == (
            "api2.example.com",
            "/api/items",
            (("x-token", "t0ken"),),
        )

    def test_builtin_profiles_declare_both(self) -> None:
        """The built-in profiles declare a schema head and a functional request for their APIs."""
        oroboros = load_profile("oroboros")
        assert [h.service for h in oroboros.schema_heads] == [
            "api",
            "api-preview-1",
            "api-preview-2",
            "api-preview-3",
        ]
        assert [q.path for q in oroboros.requests] == ["/api/worktrees"]
        nooterra = load_profile("nooterra", environ={"GATES_NOOTERRA_OPS_TOKEN": "tok"})
        assert [(h.table, h.column) for h in nooterra.schema_heads] == [("proxy_migrations", "id")]
        assert [q.name for q in nooterra.requests] == ["ops-reload", "healthz-counts"]
        assert [q.name for q in load_profile("nooterra", environ={}).requests] == ["healthz-counts"]


class TestHeadLines:
    """What a heads command printed, read as a set of heads."""

    def test_first_word_of_each_line(self) -> None:
        """``alembic heads`` prints ``<rev> (head)``; blank lines are ignored; the set is sorted."""
        assert head_lines("20260216_0003 (head)\n\n0001 (head)\n") == ("0001", "20260216_0003")

    def test_file_listing(self) -> None:
        """A listing of migration files is one head per file."""
        assert head_lines("001_init.sql\n002_more.sql\n") == ("001_init.sql", "002_more.sql")


def _ctx() -> Context:
    return Context(settings=ProbeSettings(), host=testinfra.get_host("local://"))


class TestTargetCommand:
    """The command probe, on the local host."""

    def test_output_and_exit_code(self) -> None:
        """Output (stdout and stderr together) and the exit code are observed."""
        out = TargetCommand(command="echo a; echo b >&2; exit 3", timeout_s=30).observe(_ctx())
        assert (out.rc, out.output.split()) == (3, ["a", "b"])

    def test_shell_metacharacters_reach_the_shell_intact(self) -> None:
        """The command is handed to ``sh -c`` as one argument."""
        out = TargetCommand(command="cd / && printf '%s\\n' \"$PWD\" 'x y'", timeout_s=30).observe(_ctx())
        assert out.output.splitlines() == ["/", "x y"]


def test_head_probe_from_commands() -> None:
    """Both sides read by commands: the applied migrations and the release's heads, each as a set."""
    probe = HeadProbe(
        applied=TargetCommand(command="echo '0002 (head)'", timeout_s=30),
        expected=TargetCommand(command="printf '0003 (head)\\n\\n'", timeout_s=30),
    )
    obs = probe.observe(_ctx())
    assert (obs.table, obs.table_found, obs.applied, obs.expected) == (None, True, ("0002",), ("0003",))


def test_migrations_table_unreachable_is_an_error() -> None:
    """A database nobody listens on cannot be observed (error), never a pass or a fail."""
    from conformance.errors import ProbeError

    spec = MigrationsTable(address="127.0.0.1", port=1, dbname="x", user="x", table="t", column="c")
    with pytest.raises(ProbeError):
        spec.observe(_ctx())


def _head(table_found: bool, applied: tuple[str, ...], expected: tuple[str, ...]) -> HeadObservation:
    return HeadObservation(
        table="alembic_version", table_found=table_found, applied=applied, expected=expected
    )


class TestSchemaAtHead:
    """``db.schema.at_head``: the applied set equals the release's heads."""

    @pytest.fixture
    def target(self, tmp_path: Path) -> SchemaHead:
        """The schema head of the sample profile."""
        return load_profile(write(tmp_path, HEADER + HEAD)).schema_heads[0]

    def test_at_head_passes(self, target: SchemaHead) -> None:
        """Equal sets pass."""
        checks.test_schema_at_head(target, _head(True, ("0003",), ("0003",)))

    @pytest.mark.parametrize(
        ("obs", "reason"),
        [
            (_head(False, (), ("0003",)), "schema_never_migrated"),
            (_head(True, (), ("0003",)), "schema_behind_head"),
            (_head(True, ("0001", "0002"), ("0001", "0002", "0003")), "schema_behind_head"),
            (_head(True, ("0002",), ("0003",)), "schema_not_at_head"),
            (_head(True, ("0003", "0004"), ("0003",)), "schema_not_at_head"),
        ],
        ids=["no-table", "empty", "row-missing", "downgraded", "ahead"],
    )
    def test_off_head_fails(self, target: SchemaHead, obs: HeadObservation, reason: str) -> None:
        """A missing table, a missing migration, or one the release does not know is a failure."""
        with pytest.raises(CheckFailed) as info:
            checks.test_schema_at_head(target, obs)
        assert info.value.reason == reason

    def test_a_failing_heads_command_is_undetermined(self) -> None:
        """A heads command that fails or prints nothing says nothing about the release: no observation."""
        from conformance.probes.migrations import CommandOutput, command_heads

        with pytest.raises(Undetermined):
            command_heads(CommandOutput(command="alembic heads", rc=1, output="boom"), "heads")
        with pytest.raises(Undetermined):
            command_heads(CommandOutput(command="alembic heads", rc=0, output=""), "heads")
        empty = CommandOutput(command="alembic current", rc=0, output="")
        assert command_heads(empty, "the applied migrations", may_be_empty=True) == ()


def _response(status: int, body: object | bytes) -> HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(url="http://127.0.0.1:8000/api/items", host_header=None, status=status, headers=(),
                        body=raw, elapsed_s=0.01)  # fmt: skip


class TestRequestAnswers:
    """``api.request.answers`` and ``api.route.answers``: status and body schema."""

    @pytest.fixture
    def profile_path(self, tmp_path: Path) -> str:
        """The sample profile with one request."""
        return write(tmp_path, HEADER + REQUEST)

    def test_conforming_answer_passes(self, profile_path: str) -> None:
        """The declared status and a body valid under the schema pass, directly and through a route."""
        profile = load_profile(profile_path)
        checks.test_request_answers(profile.requests[0], _response(200, [{"id": 1}]))
        checks.test_routed_request_answers(checks.routed_requests(profile)[0], _response(200, []))

    @pytest.mark.parametrize(
        ("obs", "reason"),
        [
            (_response(500, b"Internal Server Error"), "request_status_mismatch"),
            (_response(200, b"<html>"), "request_body_not_json"),
            (_response(200, [{"name": "x"}]), "request_body_schema_mismatch"),
            (_response(200, {"id": 1}), "request_body_schema_mismatch"),
        ],
        ids=["500", "not-json", "missing-member", "wrong-type"],
    )
    def test_wrong_answer_fails(self, profile_path: str, obs: HttpResponse, reason: str) -> None:
        """A wrong status, a body that is not JSON, or one that breaks the schema fails."""
        (q,) = load_profile(profile_path).requests
        with pytest.raises(CheckFailed) as info:
            checks.test_request_answers(q, obs)
        assert info.value.reason == reason
