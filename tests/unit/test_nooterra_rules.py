"""Unit tests for the Nooterra contract rules, their JavaScript semantics, and malformed inputs (exit 2)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from conformance import nooterra as rules
from conformance.nooterra import FileRead
from conformance.profile import load_profile
from gates.testing import run_cli

DATA = Path(__file__).parent / "data"
BUNDLE = Path(__file__).resolve().parents[2] / "fixtures" / "nooterra" / "bundle"
POLICY = json.loads((BUNDLE / "docs/kernel-compatible/serving-mode-boundary-policy.json").read_text())
NOW = dt.datetime(2026, 3, 25, 12, 0, 0, tzinfo=dt.UTC)


def read(text: str | None, path: str = "/b/f") -> FileRead:
    """An observed file."""
    return FileRead(
        path=path,
        text=text,
        sha256=None if text is None else "0" * 64,
        error="ENOENT" if text is None else None,
    )


class TestJavaScriptSemantics:
    """The rules behave as upstream's JavaScript does where it shows in the reports."""

    def test_locale_compare_order(self) -> None:
        """collation_key orders strings exactly as Node.js localeCompare (table recorded from Node.js)."""
        table = json.loads((DATA / "locale-compare.json").read_text())
        assert rules.locale_sorted(table["unsorted"]) == table["sorted"]

    def test_multiline_anchors_accept_crlf(self) -> None:
        """`/^##\\s+Rollback$/m` matches a CRLF line, as JavaScript's `$` stops before `\\r`."""
        pattern = rules.js_regex("/^##\\s+Rollback$/m")
        assert pattern.test("# T\r\n## Rollback\r\nmore")
        assert not pattern.test("# T\n## Rollback now\n")

    def test_js_whitespace(self) -> None:
        """`\\s` and trim use JavaScript's whitespace set (BOM yes, U+001C no)."""
        assert rules.js_trim("\ufeff KEY=1 \u2028") == "KEY=1"
        assert rules.js_trim("\x1cKEY") == "\x1cKEY"
        assert rules.js_regex('/PROXY_MIGRATE_ON_STARTUP:\\s*"1"/u').test(
            'PROXY_MIGRATE_ON_STARTUP:\ufeff"1"'
        )

    def test_compose_service_names_stop_at_next_top_level_key(self) -> None:
        """Only two-space-indented keys under services: count, up to the next top-level key."""
        text = "x:\n  fake:\nservices:\n  api:\n    image: a\n  db:   \r\nvolumes:\n  data:\n"
        assert rules.compose_service_names(text) == ["api", "db"]

    def test_env_example_keys_skip_comments(self) -> None:
        """Commented assignments do not declare a key."""
        assert rules.env_example_keys("# A=1\n  B=2\nC =3\n_D=\n") == ["_D", "B"]


class TestRules:
    """Single rules, including the extensions upstream does not check."""

    def test_unreadable_compose(self) -> None:
        """A missing compose file fails with upstream's code and Node's message."""
        out = rules.compose_topology_present(
            FileRead(
                path="/b/c.yml",
                text=None,
                sha256=None,
                error="ENOENT: no such file or directory, open '/b/c.yml'",
            )
        )
        assert (out.ok, out.failure_code) == (False, "compose_topology_missing_or_unreadable")
        assert out.detail == {
            "path": "/b/c.yml",
            "message": "Unable to read compose topology file: ENOENT: no such file or directory, open '/b/c.yml'",
        }

    def test_policy_problems_sorted(self) -> None:
        """An empty policy lists every problem, sorted as upstream sorts them."""
        problems = rules.policy_problems({})
        assert problems == rules.locale_sorted(problems)
        assert "schemaVersion must be NooterraServingModeBoundaryPolicy.v1" in problems
        assert "modes.local-dev.trustBoundary.customerTrafficAllowed must be false" in problems
        assert rules.policy_problems(POLICY) == []

    def test_topology_green_on_non_object(self) -> None:
        """A JSON array is parsed but is not a topology report: schema invalid."""
        out = rules.self_host_topology_bundle_gate_green(read("[]"))
        assert out.failure_code == "self_host_topology_bundle_schema_invalid"

    def test_hash_valid_detects_edits(self) -> None:
        """A report whose content changed after hashing fails; an intact one passes."""
        report = {
            "schemaVersion": rules.TOPOLOGY_SCHEMA_VERSION,
            "capturedAt": None,
            "checks": [],
            "verdict": {"ok": True},
        }
        report["artifactHash"] = rules.gate_report_hash(report)
        assert rules.topology_report_hash_valid(read("{}"), report).ok
        report["capturedAt"] = "2026-01-01T00:00:00.000Z"
        out = rules.topology_report_hash_valid(read("{}"), report)
        assert (out.ok, out.failure_code) == (False, "self_host_topology_bundle_artifact_hash_mismatch")

    def test_sources_current(self) -> None:
        """A report certifies the current files only when each recorded sha256 equals the current one."""
        report = {"sources": {"compose": {"path": "/b/c", "sha256": "a" * 64}, "envExample": None}}
        compose = FileRead(path="/b/c", text="x", sha256="a" * 64, error=None)
        missing_env = FileRead(path="/b/e", text=None, sha256=None, error="ENOENT")
        assert rules.topology_report_sources_current(
            read("{}"), report, {"compose": compose, "envExample": missing_env}
        ).ok
        changed = FileRead(path="/b/c", text="y", sha256="b" * 64, error=None)
        out = rules.topology_report_sources_current(
            read("{}"), report, {"compose": changed, "envExample": missing_env}
        )
        assert out.failure_code == "self_host_topology_bundle_sources_stale"
        assert [m["source"] for m in out.detail["mismatches"]] == ["compose"]

    @pytest.mark.parametrize(
        ("generated", "code"),
        [
            ("2026-03-25T11:00:00.000Z", None),
            ("2026-03-23T11:00:00.000Z", "self_host_topology_bundle_report_stale"),
            ("2026-03-26T11:00:00.000Z", "self_host_topology_bundle_report_from_future"),
            ("yesterday", "self_host_topology_bundle_report_undated"),
        ],
        ids=["fresh", "stale", "future", "undated"],
    )
    def test_fresh(self, generated: str, code: str | None) -> None:
        """The report's generatedAt must lie within maxAgeSeconds before now."""
        out = rules.topology_report_fresh(read("{}"), {"generatedAt": generated}, now=NOW, max_age_s=86400)
        assert out.failure_code == code
        assert out.ok is (code is None)

    @pytest.mark.parametrize(
        ("mode", "code"),
        [
            ("self-host", None),
            ("hosted", None),
            ("", "SERVING_MODE_REQUIRED"),
            ("prod", "SERVING_MODE_UNKNOWN"),
        ],
    )
    def test_serving_mode_declared(self, mode: str, code: str | None) -> None:
        """The declared mode must be one of the policy's allowed modes; the codes come from the policy."""
        assert rules.serving_mode_declared(POLICY, mode).failure_code == code

    def test_local_dev_refused_with_policy_codes(self) -> None:
        """local-dev is refused for production with the policy's local-dev reason codes."""
        out = rules.serving_mode_contract_match(POLICY, "local-dev")
        assert not out.ok
        assert out.detail["reasonCodes"] == [
            "SERVING_MODE_LOCAL_DEV_CUSTOMER_TRAFFIC_FORBIDDEN",
            "SERVING_MODE_LOCAL_DEV_PRODUCTION_CUTOVER_FORBIDDEN",
            "SERVING_MODE_CONTRACT_MISMATCH",
        ]
        assert rules.serving_mode_contract_match(POLICY, "self-host").ok


class TestProfile:
    """The nooterra profile: required serving mode, bundle paths, a service without a port."""

    def test_defaults_and_overrides(self) -> None:
        """Bundle paths resolve under bundle.dir unless absolute; servingMode comes from the environment."""
        profile = load_profile(
            "nooterra",
            {"bundle.dir": "/opt/b", "bundle.playbook": "/etc/playbook.md"},
            environ={"GATES_NOOTERRA_SERVING_MODE": "hosted"},
        )
        assert profile.serving_mode == "hosted"
        assert profile.bundle is not None
        compose = profile.bundle.file("compose")
        playbook = profile.bundle.file("playbook")
        report = profile.bundle.file("topologyReport")
        assert compose is not None
        assert compose.path == "/opt/b/deploy/compose/nooterra-self-host.topology.yml"
        assert playbook is not None
        assert playbook.path == "/etc/playbook.md"
        assert report is not None
        assert report.max_age_s == 86400
        assert not profile.service("maintenance").listens
        assert {s.role for s in profile.services} >= {
            "nooterra-api",
            "paid-upstream-tool-api",
            "x402-gateway",
        }

    def test_serving_mode_required(self) -> None:
        """Without --set or the environment, servingMode is empty (the serving-mode gate then fails)."""
        assert load_profile("nooterra", environ={}).serving_mode == ""


class TestMalformedInputs:
    """Malformed profiles, gate files and reports exit 2 and name the file and the place."""

    def test_gate_with_unknown_format(self, tmp_path: Path) -> None:
        """An unknown report format names the gate file and line."""
        gate = tmp_path / "gate.yaml"
        gate.write_text(
            "schemaVersion: gates.gate/v1\nname: g\nreport: g.json\nformat: nope\n"
            "requires:\n  - check: selfhost.compose.present\n",
            encoding="utf-8",
        )
        code, _, err = run_cli("run", "--profile", "nooterra", "--gate", str(gate))
        assert code == 2
        assert str(gate) in err
        assert "line 4" in err
        assert "unknown report format 'nope'" in err

    def test_format_cannot_report_check(self, tmp_path: Path) -> None:
        """An upstream format refuses a check it has no upstream id for."""
        gate = tmp_path / "gate.yaml"
        gate.write_text(
            "schemaVersion: gates.gate/v1\nname: g\nreport: g.json\nformat: nooterra-self-host-topology-bundle\n"
            "requires:\n  - check: health.http.status_exact\n",
            encoding="utf-8",
        )
        code, _, err = run_cli("run", "--profile", "nooterra", "--gate", str(gate))
        assert code == 2
        assert str(gate) in err
        assert "health.http.status_exact" in err

    def test_profile_with_bad_bundle(self, tmp_path: Path) -> None:
        """A bundle file entry with an unknown key names the profile file and line."""
        text = (Path(__file__).resolve().parents[2] / "conformance/profiles/nooterra.yaml").read_text()
        bad = text.replace("    compose: ${bundle.compose}\n", "    compose: {file: x}\n")
        assert bad != text
        path = tmp_path / "p.yaml"
        path.write_text(bad, encoding="utf-8")
        code, _, err = run_cli("list", "--profile", str(path))
        assert code == 2
        assert str(path) in err
        assert "line" in err
        assert "bundle.files.compose" in err

    def test_verify_rejects_malformed_upstream_report(self, tmp_path: Path) -> None:
        """An upstream-shaped report missing a field fails its schema, with the file and the place named."""
        path = tmp_path / "r.json"
        path.write_text(
            json.dumps({"schemaVersion": "SelfHostTopologyBundleGateReport.v1", "checks": [{"id": "x"}]}),
            encoding="utf-8",
        )
        code, _, err = run_cli("verify-report", str(path))
        assert code == 2
        assert str(path) in err
        assert "nooterra-self-host-topology-bundle-gate-report" in err

    def test_verify_rejects_tampered_upstream_report(self, tmp_path: Path) -> None:
        """An upstream report whose content changed after hashing is refused at artifactHash."""
        vectors = Path(__file__).with_name("data") / "nooterra-gate-reports.json"  # copied from the vectors
        report = json.loads(vectors.read_text())["gateReports"]["serving-mode-boundary-gate"]
        report["capturedAt"] = None
        path = tmp_path / "r.json"
        path.write_text(json.dumps(report), encoding="utf-8")
        code, _, err = run_cli("verify-report", str(path))
        assert code == 2
        assert f"{path}: artifactHash:" in err
