"""Unit tests for work-loop declarations and their log summary, and for the process-environment checks' rules."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import testinfra

from conformance.errors import ConfigError, ProbeError
from conformance.loops import LogSignal
from conformance.probes.base import Context
from conformance.probes.procenv import ListenerEnvDigest
from conformance.probes.progress import LoopLog, LoopRows, summarize
from conformance.profile import ProbeSettings, load_profile
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

    def test_file_side_is_shown_as_the_target_shows_the_process_side(self) -> None:
        """A URL from the env file loses its password exactly as the probe strips it; a secret is masked whole."""
        env = next(e for e in load_profile("nooterra").env_files if e.name == "api")
        shown = procenv._shown(env, "DATABASE_URL", "postgresql://proxy:pw-Zq7xK2pW9m@127.0.0.1:5432/proxy")
        assert shown == "postgresql://proxy@127.0.0.1:5432/proxy"
        assert procenv._shown(env, "PROXY_OPS_TOKENS", "tok:ops_read") == "<redacted>"

    def test_database_owners(self) -> None:
        """The api owns the control-plane database; each slot database belongs to the slot's api."""
        profile = load_profile("oroboros")
        owners = procenv.owners(profile)
        assert owners[("127.0.0.1", 5432, "builder_control")] == "api"
        assert owners[("127.0.0.1", 5432, "app_preview_1")] == "api-preview-1"
        assert [s.name for s in procenv.with_database(profile)] == ["api", "worker"]


@pytest.fixture
def listener() -> Iterator[int]:
    """A real process listening on a free loopback port, started with a known environment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PATH": os.environ["PATH"], "PLAIN": "v1", "SERVICE_TOKEN": "tok-Zq7xK2pW9m-secret",
           "DATABASE_URL": "postgresql://app:pw-Zq7xK2pW9m@127.0.0.1:5432/app"}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "http.server", "-b", "127.0.0.1", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(100):
            with socket.socket() as c:
                if c.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.skipif(
    os.geteuid() != 0, reason="reading another process's listener table and environ needs root"
)
class TestListenerEnvDigest:
    """The probe on a real listener: what leaves the host."""

    def test_modes_and_absent_keys(self, listener: int) -> None:
        """Plain values come back, URLs without their password, secrets as sha256 only; missing keys are named."""
        keys = (
            ("PLAIN", "value"),
            ("DATABASE_URL", "url"),
            ("SERVICE_TOKEN", "digest"),
            ("NOT_SET", "value"),
        )
        ctx = Context(settings=ProbeSettings(), host=testinfra.get_host("local://"))
        got = ListenerEnvDigest(port=listener, keys=keys).observe(ctx)  # type: ignore[arg-type]
        plain, url, token = (got.entry(k) for k in ("PLAIN", "DATABASE_URL", "SERVICE_TOKEN"))
        assert plain is not None
        assert plain.shown == "v1"
        assert url is not None
        assert url.shown == "postgresql://app@127.0.0.1:5432/app"
        assert url.sha256 == hashlib.sha256(b"postgresql://app:pw-Zq7xK2pW9m@127.0.0.1:5432/app").hexdigest()
        assert token is not None
        assert token.shown is None
        assert token.sha256 == hashlib.sha256(b"tok-Zq7xK2pW9m-secret").hexdigest()
        assert got.absent == ("NOT_SET",)
        assert "Zq7xK2pW9m" not in repr(got)


class TestLoopLogProbe:
    """The log probe runs the declared command on the target and reads the target's clock."""

    def test_counts_what_the_command_prints(self, tmp_path: Path) -> None:
        """Lines printed by the command are summarized against the host's own time."""
        now = datetime.now(tz=UTC)
        log = tmp_path / "worker.log"
        log.write_text(
            "\n".join(json.dumps({"ts": now.isoformat(), "event": e}) for e in ("started", "tick")) + "\n"
        )
        ctx = Context(settings=ProbeSettings(), host=testinfra.get_host("local://"))
        got = LoopLog(signal=replace(SIGNAL, command=f"cat {log}"), window_s=300).observe(ctx)
        assert got.successes == 1
        assert got.last_success_age_s is not None
        assert got.last_success_age_s < 300

    def test_a_failing_command_is_an_error(self) -> None:
        """A log command that fails cannot observe: the checks are errors, not passes."""
        ctx = Context(settings=ProbeSettings(), host=testinfra.get_host("local://"))
        with pytest.raises(ProbeError, match="exit 3"):
            LoopLog(signal=replace(SIGNAL, command="exit 3"), window_s=300).observe(ctx)
