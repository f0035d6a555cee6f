"""Unit tests for work-loop declarations and their log summary, and for the process-environment checks' rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conformance.errors import ConfigError
from conformance.loops import LogSignal
from conformance.probes.progress import LoopRows, summarize
from conformance.profile import load_profile
from conformance.suite import test_process_env as procenv

HEADER = "schemaVersion: gates.profile/v1\nname: sample\n"
SERVICES = (
    "services:\n"
    "  - {name: worker, kind: http, bind: 127.0.0.1, port: 8090}\n"
    "  - {name: db, kind: postgres, bind: 127.0.0.1, port: 5432, database: app, dbUser: app}\n"
)
SIGNAL = LogSignal(command="cat log", time_field="ts", event_field="event", success=("tick",),
                   failure=("tick_failed",), start=("started",))  # fmt: skip
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()


def line(seconds_ago: float, event: str) -> str:
    """One JSON log line ``seconds_ago`` before NOW."""
    at = datetime.fromtimestamp(NOW - seconds_ago, tz=UTC).isoformat()
    return json.dumps({"ts": at, "event": event})


def write(tmp_path: Path, text: str) -> Path:
    """A profile file under ``tmp_path``."""
    path = tmp_path / "profile.yaml"
    path.write_text(HEADER + SERVICES + text, encoding="utf-8")
    return path


class TestLogSummary:
    """What a loop's JSON log lines say about its progress."""

    def test_recent_success_and_failures_in_window(self) -> None:
        """The newest success gives the age; failures are counted only inside the window."""
        lines = [
            line(500, "tick_failed"),
            line(100, "tick_failed"),
            line(30, "tick"),
            "not json",
            line(20, "other"),
        ]
        got = summarize(lines, SIGNAL, NOW, 300, "log")
        assert (got.last_success_age_s, got.failures, got.successes) == (30.0, 1, 1)
        assert got.last_failure_age_s == 100.0

    def test_only_the_newest_start_counts(self) -> None:
        """Successes logged by an earlier process say nothing of the running one."""
        lines = [line(60, "tick"), line(50, "started"), line(45, "tick_failed"), line(40, "tick_failed")]
        got = summarize(lines, SIGNAL, NOW, 300, "log")
        assert got.last_success_age_s is None
        assert got.failures == 2

    def test_lines_without_time_or_from_the_future_are_ignored(self) -> None:
        """A line whose time is missing, naive or ahead of the target's clock is not a cycle."""
        naive = json.dumps({"ts": "2026-01-01T11:59:00", "event": "tick"})
        got = summarize([naive, json.dumps({"event": "tick"}), line(-60, "tick")], SIGNAL, NOW, 300, "log")
        assert got.last_success_age_s is None
        assert got.successes == 0


class TestLoopDeclaration:
    """The ``loops`` section of a profile."""

    def test_sql_loop_parsed(self, tmp_path: Path) -> None:
        """A table signal keeps its identifiers and conditions; the window defaults to the age bound."""
        path = write(tmp_path, "loops:\n  - name: jobs\n    maxAgeSeconds: 60\n    sql: {service: db, table: "
                     "public.job_runs, timeColumn: finished_at, successWhen: \"status = 'ok'\"}\n")  # fmt: skip
        loop = load_profile(str(path)).loops[0]
        assert (loop.signal, loop.window_s, loop.max_failures) == ("sql", 60, 0)
        assert loop.sql is not None
        assert loop.sql.where == "true"

    def test_sql_service_must_be_postgres(self, tmp_path: Path) -> None:
        """A table signal on a service that is not PostgreSQL is a configuration error naming the place."""
        path = write(tmp_path, "loops:\n  - name: jobs\n    maxAgeSeconds: 60\n    sql: {service: worker, table: t, "
                     "timeColumn: at, successWhen: 'true'}\n")  # fmt: skip
        with pytest.raises(ConfigError, match="not a declared postgres service"):
            load_profile(str(path))

    def test_table_must_be_an_identifier(self, tmp_path: Path) -> None:
        """A table name that is not an identifier is refused before any SQL is built."""
        path = write(tmp_path, "loops:\n  - name: jobs\n    maxAgeSeconds: 60\n    sql: {service: db, table: "
                     "'t; drop table x', timeColumn: at, successWhen: 'true'}\n")  # fmt: skip
        with pytest.raises(ConfigError, match="expected an identifier"):
            load_profile(str(path))

    def test_exactly_one_signal(self, tmp_path: Path) -> None:
        """A loop declares a log or a table, not neither."""
        path = write(tmp_path, "loops:\n  - name: jobs\n    maxAgeSeconds: 60\n")
        with pytest.raises(ConfigError):
            load_profile(str(path))

    def test_builtin_profiles_declare_their_loops(self) -> None:
        """Oroboros judges its worker by its cycle log, Nooterra its maintenance loop by its ops_audit rows."""
        oro = load_profile("oroboros").loops
        noo = load_profile("nooterra").loops
        assert [(lp.name, lp.signal) for lp in oro] == [("worker", "log")]
        assert [(lp.name, lp.signal) for lp in noo] == [("maintenance", "sql")]

    def test_row_query_quotes_identifiers(self) -> None:
        """Table and column are quoted identifiers; the window is a literal."""
        rows = LoopRows(address="127.0.0.1", port=5432, dbname="d", user="u", table="public.ops_audit",
                        time_column="at", where="true", success_when="ok", window_s=90)  # fmt: skip
        text = rows.query().as_string(None)
        assert '"public"."ops_audit"' in text
        assert '"at" AS t' in text
        assert "secs => 90" in text


class TestProcessEnvRules:
    """Which keys are read from a process, and how."""

    def test_modes(self) -> None:
        """URLs lose their password on the target; secret-named keys come back as digests only."""
        profile = load_profile("nooterra")
        env = next(e for e in profile.env_files if e.name == "api")
        assert procenv.key_mode(env, "DATABASE_URL") == "url"
        assert procenv.key_mode(env, "PROXY_OPS_TOKENS") == "digest"
        assert procenv.key_mode(env, "NODE_ENV") == "value"
        assert "PROXY_RATE_LIMIT_RPM" in procenv.named_keys(env)

    def test_database_owners(self) -> None:
        """The api owns the control-plane database; each slot database belongs to the slot's api."""
        profile = load_profile("oroboros")
        owners = procenv.owners(profile)
        assert owners[("127.0.0.1", 5432, "builder_control")] == "api"
        assert owners[("127.0.0.1", 5432, "app_preview_1")] == "api-preview-1"
        assert [s.name for s in procenv.with_database(profile)] == ["api", "worker"]
