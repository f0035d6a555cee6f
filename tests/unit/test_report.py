"""Unit tests for `gates.report`: building, hashing, writing and verifying gate reports."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from conformance.errors import ConfigError
from conformance.profile import Profile, load_profile
from conformance.redact import Redactor
from gates import report as reports
from gates.evaluate import evaluate
from gates.gate import Gate, expand, load_gate

SECRET = "Tr0ub4dor-and-3-secret"
NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def make_report(
    *, profile: Profile | None = None, now: dt.datetime = NOW, fail_message: str | None = None
) -> dict[str, Any]:
    """A runtime-health report for the oroboros profile; one check fails when ``fail_message`` is given."""
    profile = profile or load_profile("oroboros", environ={})
    gate: Gate = load_gate("runtime-health")
    exp = expand(gate, profile)
    results: dict[str, dict[str, Any]] = {i.id: {"outcome": "pass", "message": "ok"} for i in exp.instances}
    if fail_message is not None:
        failing = "health.postgres.database_connect[postgres]"
        results[failing] = {
            "outcome": "fail",
            "reasonCode": "login_failed",
            "message": fail_message,
            "observed": {"dsn": f"postgresql://postgres@127.0.0.1/builder_control password={SECRET}"},
            "expected": "a successful login",
            "remediation": f"check that the password {SECRET} is right",
        }
    evaluation = evaluate(gate, exp, results)
    return reports.build(
        gate,
        profile,
        evaluation,
        target="local",
        captured_at=None,
        redactor=Redactor(profile.secrets()),
        now=now,
    )


def written(tmp_path: Path, body: dict[str, Any]) -> Path:
    """Write ``body`` as a report under ``tmp_path`` and return its path."""
    path = tmp_path / "gates" / "runtime-health.json"
    reports.write(body, path)
    return path


class TestArtifactHash:
    """The artifactHash covers the deterministic core only."""

    def test_generated_at_not_hashed(self) -> None:
        """Two builds at different times differ in generatedAt but share one artifactHash."""
        first = make_report(now=NOW)
        second = make_report(now=NOW + dt.timedelta(hours=3))
        assert first["generatedAt"] != second["generatedAt"]
        assert first["artifactHash"] == second["artifactHash"]

    def test_generated_at_format(self) -> None:
        """generatedAt is UTC with millisecond precision and a Z suffix."""
        assert make_report(now=NOW)["generatedAt"] == "2024-05-01T12:00:00.000Z"

    def test_hash_matches_content(self) -> None:
        """The stored artifactHash equals artifact_hash of the report."""
        body = make_report()
        assert body["artifactHash"] == reports.artifact_hash(body)

    def test_verdict_change_changes_hash(self) -> None:
        """A different verdict gives a different artifactHash."""
        assert make_report()["artifactHash"] != make_report(fail_message="login failed")["artifactHash"]


class TestWriteAndVerify:
    """`write` produces schema-valid files that `verify` accepts, and `verify` rejects edits."""

    def test_round_trip(self, tmp_path: Path) -> None:
        """A written report verifies and reads back equal to what was built."""
        body = make_report()
        path = written(tmp_path, body)
        assert reports.verify(path) == body
        assert not path.with_suffix(".json.tmp").exists()

    def test_write_rejects_schema_invalid(self, tmp_path: Path) -> None:
        """write refuses a report that does not match the schema and writes nothing."""
        body = make_report()
        del body["verdict"]
        path = tmp_path / "bad.json"
        with pytest.raises(ConfigError, match="schema"):
            reports.write(body, path)
        assert not path.exists()

    def test_tampered_status_rejected(self, tmp_path: Path) -> None:
        """Editing a check's status after writing makes verify fail on artifactHash."""
        path = written(tmp_path, make_report())
        data = json.loads(path.read_text(encoding="utf-8"))
        data["checks"][0]["status"] = "fail"
        path.write_text(json.dumps(data), encoding="utf-8")
        with pytest.raises(ConfigError) as info:
            reports.verify(path)
        assert "artifactHash" in info.value.render()
        assert str(path) in info.value.render()

    def test_edited_generated_at_accepted(self, tmp_path: Path) -> None:
        """generatedAt is outside the hashed core, so editing it keeps the report valid."""
        path = written(tmp_path, make_report())
        data = json.loads(path.read_text(encoding="utf-8"))
        data["generatedAt"] = "2030-01-01T00:00:00.000Z"
        path.write_text(json.dumps(data), encoding="utf-8")
        assert reports.verify(path)["generatedAt"] == "2030-01-01T00:00:00.000Z"

    def test_non_json_rejected(self, tmp_path: Path) -> None:
        """A file that is not JSON is a ConfigError naming the file."""
        path = tmp_path / "report.json"
        path.write_text("{not json", encoding="utf-8")
        with pytest.raises(ConfigError, match="not JSON") as info:
            reports.verify(path)
        assert info.value.source == str(path)

    def test_schema_invalid_rejected(self, tmp_path: Path) -> None:
        """A JSON file that does not match the report schema is a ConfigError."""
        path = tmp_path / "report.json"
        path.write_text(json.dumps({"schemaVersion": "GatesGateReport.v1"}), encoding="utf-8")
        with pytest.raises(ConfigError, match="does not match schema"):
            reports.verify(path)

    def test_missing_file_rejected(self, tmp_path: Path) -> None:
        """A report path that does not exist is a ConfigError."""
        with pytest.raises(ConfigError, match="cannot read report"):
            reports.verify(tmp_path / "absent.json")


class TestRedaction:
    """Secret values never reach a written report."""

    def test_secret_in_detail_is_scrubbed(self, tmp_path: Path) -> None:
        """A secret supplied via overrides and echoed in a check's message, observation and hint is not written."""
        profile = load_profile("oroboros", {"postgres.password": SECRET}, environ={})
        body = make_report(profile=profile, fail_message=f"login as postgres with {SECRET} was refused")
        path = written(tmp_path, body)
        text = path.read_text(encoding="utf-8")
        assert SECRET not in text
        assert "<redacted>" in text
        data = reports.verify(path)
        assert data["inputs"]["variables"]["postgres.password"] == "<redacted>"
        failing = next(c for c in data["checks"] if c["status"] == "fail")
        assert failing["detail"]["message"] == "login as postgres with <redacted> was refused"
        assert data["blockingIssues"][0]["reason"] == "login as postgres with <redacted> was refused"

    def test_default_secret_masked_in_variables(self) -> None:
        """Even a secret variable left at its default is masked in the report's inputs."""
        body = make_report()
        assert body["inputs"]["variables"]["postgres.password"] == "<redacted>"
