"""The upstream Nooterra gate reports, reproduced byte for byte from the same inputs.

The vectors (``shared/reference/nooterra-test-vectors.json``, key ``gateReports``) were produced
by upstream's own scripts over files under ``/srv/nooterra``. Files the reference copy holds are
read from it (their sha256 must equal the recorded ones); files it lacks (Helm chart, DEVELOPMENT.md,
the earlier topology report, the failing example's compose) are fed as observations carrying the
recorded path and sha256 and a text with the same features. Every outcome then goes through the
same evaluation and report writer as a real run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from conformance import nooterra as rules
from conformance.canonical import canonical_json
from conformance.checks import instance_id
from conformance.nooterra import FileRead, Outcome
from conformance.profile import load_profile
from conformance.redact import Redactor
from gates import report as reports
from gates.evaluate import evaluate
from gates.formats import nooterra as formats
from gates.gate import expand, load_gate

# The upstream reference copies live in the shared folder beside the project root (override: GATES_SHARED_DIR).
SHARED = Path(os.environ.get("GATES_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared")
VECTORS = SHARED / "reference" / "nooterra-test-vectors.json"
REFERENCE = SHARED / "reference" / "nooterra"
ROOT = "/srv/nooterra"
CAPTURED = "2026-03-25T00:00:00.000Z"
GENERATED = dt.datetime(2026, 3, 25, 0, 0, 5, tzinfo=dt.UTC)

pytestmark = pytest.mark.skipif(not VECTORS.is_file(), reason=f"no test vectors at {VECTORS}")


def vectors() -> dict[str, Any]:
    """The four upstream gate reports."""
    reports_: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))["gateReports"]
    return reports_


def from_reference(rel: str, sha256: str) -> FileRead:
    """A file of the reference copy, as read at ``/srv/nooterra/<rel>``; its digest must be the recorded one."""
    text = (REFERENCE / rel).read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert digest == sha256, f"{rel}: the reference copy differs from the file the vectors hashed"
    return FileRead(path=f"{ROOT}/{rel}", text=text, sha256=digest, error=None)


def recorded(path: str, sha256: str, text: str) -> FileRead:
    """A file the reference copy lacks: the recorded path and digest, with a text of the same features."""
    return FileRead(path=path, text=text, sha256=sha256, error=None)


def build(gate_name: str, outcomes: dict[str, Outcome]) -> dict[str, Any]:
    """Evaluate the outcomes as check results and write the gate's report, pinned to the vectors' clock."""
    profile = load_profile("nooterra", {"bundle.dir": ROOT, "serving_mode": "self-host"}, environ={})
    gate = load_gate(gate_name)
    gate = dataclasses.replace(gate, requires=tuple(r for r in gate.requires if r.check in outcomes))
    results = {
        instance_id(check, "bundle"): {
            "outcome": "pass" if o.ok else "fail",
            "reasonCode": o.failure_code,
            "message": o.message,
            "observed": o.detail,
        }
        for check, o in outcomes.items()
    }
    evaluation = evaluate(gate, expand(gate, profile), results)
    return reports.build(
        gate, profile, evaluation, target="local", captured_at=CAPTURED, redactor=Redactor(), now=GENERATED
    )


def assert_same(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    """Same canonical deterministic core, same artifactHash, same document."""
    core = {k: ours[k] for k in rules.REPORT_CORE_KEYS}
    assert canonical_json(core) == canonical_json({k: theirs[k] for k in rules.REPORT_CORE_KEYS})
    assert ours["artifactHash"] == theirs["artifactHash"] == rules.gate_report_hash(theirs)
    assert ours == theirs


COMPOSE = "deploy/compose/nooterra-self-host.topology.yml"
ENV = "deploy/compose/self-host.env.example"


class TestVectors:
    """Each upstream report is reproduced from its inputs."""

    def test_topology_bundle_pass(self) -> None:
        """The passing topology report: six checks over the reference compose and env example."""
        theirs = vectors()["self-host-topology-bundle-gate"]
        compose = from_reference(COMPOSE, theirs["sources"]["compose"]["sha256"])
        env = from_reference(ENV, theirs["sources"]["envExample"]["sha256"])
        text = compose.text or ""
        outcomes = {
            "selfhost.compose.present": rules.compose_topology_present(compose),
            "selfhost.compose.services_declared": rules.required_services_declared(text),
            "selfhost.compose.evidence_store_wired": rules.api_evidence_store_wiring_present(text),
            "selfhost.compose.gateway_key_fail_closed": rules.x402_gateway_api_key_fail_closed(text),
            "selfhost.compose.magic_link_bound": rules.magic_link_nooterra_binding_present(text),
            "selfhost.env_example.required_keys": rules.env_example_required_keys_present(env),
        }
        assert_same(build("self-host-topology-bundle", outcomes), theirs)

    def test_topology_bundle_failing_example(self) -> None:
        """The failing example: a compose whose gateway key is not fail-closed, and no env example at all."""
        theirs = vectors()["self-host-topology-bundle-gate.FAILING-EXAMPLE"]
        good = (REFERENCE / COMPOSE).read_text(encoding="utf-8")
        bad_text = good.replace('"${NOOTERRA_GATEWAY_API_KEY:?', '"${NOOTERRA_GATEWAY_API_KEY:-')
        assert bad_text != good
        compose = recorded(f"{ROOT}/bad-compose.yml", theirs["sources"]["compose"]["sha256"], bad_text)
        env = FileRead(
            path="/nonexistent.env",
            text=None,
            sha256=None,
            error="ENOENT: no such file or directory, open '/nonexistent.env'",
        )
        outcomes = {
            "selfhost.compose.present": rules.compose_topology_present(compose),
            "selfhost.compose.services_declared": rules.required_services_declared(bad_text),
            "selfhost.compose.evidence_store_wired": rules.api_evidence_store_wiring_present(bad_text),
            "selfhost.compose.gateway_key_fail_closed": rules.x402_gateway_api_key_fail_closed(bad_text),
            "selfhost.compose.magic_link_bound": rules.magic_link_nooterra_binding_present(bad_text),
            "selfhost.env_example.required_keys": rules.env_example_required_keys_present(env),
        }
        assert_same(build("self-host-topology-bundle", outcomes), theirs)

    def test_upgrade_migration_pass(self) -> None:
        """The passing upgrade report (upstream's five checks; the extensions are not in upstream's report)."""
        theirs = vectors()["self-host-upgrade-migration-gate"]
        src = theirs["sources"]
        topology = src["topologyGate"]
        report_text = json.dumps(
            {
                "schemaVersion": topology["schemaVersion"],
                "verdict": {"ok": True, "status": "pass"},
                "artifactHash": topology["artifactHash"],
            }
        )
        outcomes = {
            "upgrade.playbook.complete": rules.upgrade_playbook_present_and_complete(
                from_reference("docs/ops/SELF_HOST_UPGRADE_MIGRATION_PLAYBOOK.md", src["playbook"]["sha256"])
            ),
            "upgrade.compose.migrate_on_startup": rules.compose_migrate_on_startup_enabled(
                from_reference(COMPOSE, src["compose"]["sha256"])
            ),
            "upgrade.helm_values.migrate_on_startup": rules.helm_values_migrate_on_startup_enabled(
                recorded(
                    src["helmValues"]["path"],
                    src["helmValues"]["sha256"],
                    "store:\n  migrateOnStartup: true\n",
                )
            ),
            "upgrade.api_template.migrate_env_wired": rules.api_template_migrate_env_wired(
                recorded(
                    src["apiTemplate"]["path"],
                    src["apiTemplate"]["sha256"],
                    "        - name: PROXY_MIGRATE_ON_STARTUP\n",
                )
            ),
            "upgrade.topology_report.green": rules.self_host_topology_bundle_gate_green(
                recorded(topology["path"], topology["sha256"], report_text)
            ),
        }
        assert_same(build("self-host-upgrade-migration", outcomes), theirs)

    def test_serving_mode_boundary_pass(self) -> None:
        """The passing serving-mode report (upstream's six checks)."""
        theirs = vectors()["serving-mode-boundary-gate"]
        src = theirs["sources"]
        outcomes = {
            "serving.policy.contract_valid": rules.policy_shape_and_contract_valid(
                from_reference(
                    "docs/kernel-compatible/serving-mode-boundary-policy.json", src["policy"]["sha256"]
                )
            ),
            "serving.boundary_doc.complete": rules.boundary_doc_present_and_referenced(
                from_reference("docs/ops/SERVING_MODES_BOUNDARY.md", src["boundaryDoc"]["sha256"])
            ),
            "serving.development_doc.references_boundary": rules.development_doc_references_mode_boundary_contract(
                recorded(
                    src["developmentDoc"]["path"],
                    src["developmentDoc"]["sha256"],
                    "See docs/ops/SERVING_MODES_BOUNDARY.md.\n",
                )
            ),
            "serving.topology_doc.references_boundary": rules.minimum_topology_doc_references_mode_boundary_contract(
                from_reference("docs/ops/MINIMUM_PRODUCTION_TOPOLOGY.md", src["minimumTopologyDoc"]["sha256"])
            ),
            "serving.compose.secrets_fail_closed": rules.self_host_compose_enforces_fail_closed_secret_contract(
                from_reference(COMPOSE, src["selfHostCompose"]["sha256"])
            ),
            "serving.helm_values.inline_secrets_denied": rules.helm_values_enforce_receiver_inline_secret_deny(
                recorded(
                    src["helmValues"]["path"],
                    src["helmValues"]["sha256"],
                    "receiver:\n  allowInlineSecrets: false\n",
                )
            ),
        }
        assert_same(build("serving-mode-boundary", outcomes), theirs)

    @pytest.mark.parametrize(
        "name",
        [
            "self-host-topology-bundle-gate",
            "self-host-upgrade-migration-gate",
            "serving-mode-boundary-gate",
            "self-host-topology-bundle-gate.FAILING-EXAMPLE",
        ],
    )
    def test_verify_report_accepts_upstream_reports(self, name: str, tmp_path: Path) -> None:
        """`gates verify-report` validates each upstream report against its schema and recomputes its hash."""
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(vectors()[name], indent=2), encoding="utf-8")
        assert reports.verify(path)["artifactHash"] == vectors()[name]["artifactHash"]


class TestUpstreamIds:
    """Every upstream check id maps back to exactly one check instance."""

    def test_instance_ids_unique(self) -> None:
        """No two upstream ids of a report share an engine check, nor the reverse."""
        for fmt in formats.FORMATS:
            ids = fmt.instance_ids()
            assert len(set(ids.values())) == len(ids) == len(fmt.rows)
