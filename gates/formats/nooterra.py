"""The three upstream Nooterra gate reports, written from this engine's check results.

``ServingModeBoundaryGateReport.v1``, ``SelfHostTopologyBundleGateReport.v1`` and
``SelfHostUpgradeMigrationGateReport.v1`` share one shape: upstream check ids sorted with
``localeCompare``, one blocking issue per check that is not ok, a pass/fail verdict, ``inputs``
(the absolute paths read) and ``sources`` (their sha256), and an ``artifactHash`` over every
field except ``generatedAt``. Each check of this engine maps to one upstream check id; its
observation is the upstream ``detail``. Where this engine could not observe (``error``,
``skip``, ``not_run``), the check is written as failed with this engine's reason code, never
as passed; a check upstream leaves out when its prerequisite failed (the compose file or the
report it parses is unreadable) is left out the same way.

Rows whose upstream id starts with ``gates_`` are this engine's extensions (upstream has no such
prefix): the upgrade drill's checks, which target the postgres service rather than the bundle and
appear only where the profile declares the drill.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conformance.checks import instance_id
from conformance.errors import ConfigError
from conformance.nooterra import collation_key, gate_report_hash
from conformance.profile import Profile
from conformance.redact import Redactor
from gates.evaluate import NOT_ALLOWED, Evaluation
from gates.gate import Gate

TARGET = "bundle"  # the checks upstream's scripts make target the profile's deployment bundle
DRILL_TARGET = "postgres"  # the upgrade drill's checks target the database service


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One upstream check: which engine check reports it, and how."""

    check: str
    upstream: str
    after: tuple[str, ...] = ()  # upstream checks whose failure makes upstream leave this one out
    code_on_pass: str | None = None  # upstream writes a failureCode even on a pass
    target: str = TARGET  # the target of the check instance this row reports


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """A file the report names: its input key, source key, the check that read it, and the bundle file."""

    input: str
    source: str
    owner: str
    file: str
    extra: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamFormat:
    """One upstream report shape."""

    name: str
    schema_version: str
    hash_scope: str
    schema: str
    prefix: str
    rows: tuple[Row, ...]
    sources: tuple[Source, ...]

    def _row(self, check: str) -> Row | None:
        return next((r for r in self.rows if r.check == check), None)

    def check(self, gate: Gate) -> None:
        """Every check the gate requires must map to an upstream check id, on its row's target only."""
        for req in gate.requires:
            row = self._row(req.check)
            if row is None:
                raise ConfigError(
                    f"report format {self.name!r} has no upstream check id for {req.check}; it can report: "
                    f"{', '.join(r.check for r in self.rows)}",
                    source=gate.source,
                )
            if req.targets is not None and list(req.targets) != [row.target]:
                raise ConfigError(
                    f"report format {self.name!r} reports only the {row.target!r} target of {req.check}",
                    source=gate.source,
                )

    def instance_ids(self) -> Mapping[str, str]:
        """Upstream check id → the engine's check instance id."""
        return {r.upstream: instance_id(r.check, r.target) for r in self.rows}

    @property
    def signable(self) -> bool:
        """Upstream signs none of these reports."""
        return False

    def prepare(self, profile: Profile) -> None:
        """Nothing to refuse ahead of the run: the bundle checks report a missing bundle themselves."""

    def artifact_hash(self, report: Mapping[str, Any]) -> str:
        """Upstream's deterministic-core hash (§7.6.2)."""
        return gate_report_hash(report)

    def not_passing(self, report: Mapping[str, Any]) -> dict[str, str]:
        """Instance id → status (pass or fail, as upstream knows them) of each check that is not ok."""
        ids = self.instance_ids()
        return {
            ids.get(c["id"], c["id"]): c["status"]
            for c in report["checks"]
            if not c["ok"] and c.get("failureCode") not in NOT_ALLOWED
        }

    def build(
        self,
        gate: Gate,
        profile: Profile,
        evaluation: Evaluation,
        *,
        captured_at: str | None,
        generated_at: str,
        redactor: Redactor,
    ) -> dict[str, Any]:
        """The upstream report for ``evaluation``, secrets scrubbed, with its artifactHash."""
        self.check(gate)
        entries: dict[str, dict[str, Any]] = {}
        for entry in evaluation.checks:
            check = str(entry["id"]).split("[", 1)[0]
            row = self._row(check)
            if row is None:  # refused by check() above
                continue
            entries[row.upstream] = self._upstream_entry(row, entry, redactor)
        for issue in evaluation.blocking:
            if issue["failureCode"] != "no_target":
                continue
            check = str(issue["checkId"])
            row = self._row(check)
            if row is not None:
                entries[row.upstream] = {
                    "id": row.upstream,
                    "ok": False,
                    "status": "fail",
                    "failureCode": "no_target",
                    "detail": {"message": f"the profile declares no target for required check {check}"},
                }
        failed = {u for u, e in entries.items() if not e["ok"]}
        checks = [
            e
            for u, e in entries.items()
            if not (
                e.pop("_observed", True) is False and any(a in failed for a in self._row_by_upstream(u).after)
            )
        ]
        checks.sort(key=lambda e: collation_key(e["id"]))
        blocking = [
            {
                "id": f"{self.prefix}:{c['id']}",
                "failureCode": c.get("failureCode") or "failed",
                "reason": _message(c) or f"{c['id']} failed",
            }
            for c in checks
            if c["ok"] is not True
        ]
        blocking.sort(key=lambda b: collation_key(b["id"]))
        passed = sum(1 for c in checks if c["ok"] is True)
        by_upstream = {c["id"]: c for c in checks}
        report: dict[str, Any] = {
            "schemaVersion": self.schema_version,
            "generatedAt": generated_at,
            "artifactHashScope": self.hash_scope,
            "capturedAt": captured_at,
            "inputs": {s.input: self._input_path(s, by_upstream, profile) for s in self.sources},
            "sources": {s.source: _source(s, by_upstream, self) for s in self.sources},
            "checks": checks,
            "blockingIssues": blocking,
            "verdict": {
                "ok": not blocking,
                "status": "fail" if blocking else "pass",
                "totalChecks": len(checks),
                "passedChecks": passed,
                "failedChecks": len(checks) - passed,
            },
        }
        report["artifactHash"] = gate_report_hash(report)
        return report

    def _row_by_upstream(self, upstream: str) -> Row:
        return next(r for r in self.rows if r.upstream == upstream)

    def _upstream_entry(self, row: Row, entry: Mapping[str, Any], redactor: Redactor) -> dict[str, Any]:
        status = entry["status"]
        detail = entry.get("detail") or {}
        observed = detail.get("observed")
        # upstream's shape knows no waivers: a waived failure stays a failure here (the gate report,
        # results, JUnit and console carry the waiver)
        if status in ("pass", "fail", "waived") and isinstance(observed, dict):
            ok = status == "pass"
            code = row.code_on_pass if ok else entry.get("failureCode")
            out: dict[str, Any] = {"id": row.upstream, "ok": ok, "status": "pass" if ok else "fail"}
            if code:
                out["failureCode"] = code
            out["detail"] = redactor.scrub(observed)
            out["_observed"] = True
            return out
        # Could not observe (or a failure without upstream detail): never a pass.
        return {
            "id": row.upstream,
            "ok": False,
            "status": "fail",
            "failureCode": entry.get("failureCode") or status,
            "detail": {"message": redactor.text(str(detail.get("message") or f"the check is {status}"))},
            "_observed": status in ("pass", "fail", "waived"),
        }

    def _input_path(self, source: Source, by_upstream: Mapping[str, Any], profile: Profile) -> str | None:
        detail = _owner_detail(source, by_upstream, self)
        if isinstance(detail.get("path"), str):
            return str(detail["path"])
        declared = profile.bundle.file(source.file) if profile.bundle is not None else None
        if declared is None:
            return None
        return posixpath.normpath(declared.path) if declared.path.startswith("/") else declared.path


def _owner_detail(source: Source, by_upstream: Mapping[str, Any], fmt: UpstreamFormat) -> dict[str, Any]:
    owner = next(r.upstream for r in fmt.rows if r.check == source.owner)
    found = by_upstream.get(owner)
    detail = found.get("detail") if found else None
    return detail if isinstance(detail, dict) else {}


def _source(source: Source, by_upstream: Mapping[str, Any], fmt: UpstreamFormat) -> dict[str, Any] | None:
    detail = _owner_detail(source, by_upstream, fmt)
    if not isinstance(detail.get("sha256"), str):
        return None  # upstream records a source only when it read (and, for JSON, parsed) it
    return {
        "path": detail.get("path"),
        "sha256": detail["sha256"],
        **{k: detail.get(k) for k in source.extra},
    }


def _message(check: Mapping[str, Any]) -> str | None:
    detail = check.get("detail")
    message = detail.get("message") if isinstance(detail, dict) else None
    return message.strip() or None if isinstance(message, str) else None


SERVING_MODE_BOUNDARY = UpstreamFormat(
    name="nooterra-serving-mode-boundary",
    schema_version="ServingModeBoundaryGateReport.v1",
    hash_scope="ServingModeBoundaryGateDeterministicCore.v1",
    schema="nooterra-serving-mode-boundary-gate-report",
    prefix="serving_mode_boundary",
    rows=(
        Row(check="serving.policy.contract_valid", upstream="policy_shape_and_contract_valid"),
        Row(check="serving.boundary_doc.complete", upstream="boundary_doc_present_and_referenced"),
        Row(
            check="serving.development_doc.references_boundary",
            upstream="development_doc_references_mode_boundary_contract",
        ),
        Row(
            check="serving.topology_doc.references_boundary",
            upstream="minimum_topology_doc_references_mode_boundary_contract",
        ),
        Row(
            check="serving.compose.secrets_fail_closed",
            upstream="self_host_compose_enforces_fail_closed_secret_contract",
        ),
        Row(
            check="serving.helm_values.inline_secrets_denied",
            upstream="helm_values_enforce_receiver_inline_secret_deny",
        ),
        Row(
            check="serving.mode.declared",
            upstream="serving_mode_declared",
            after=("policy_shape_and_contract_valid",),
        ),
        Row(
            check="serving.mode.production_eligible",
            upstream="serving_mode_contract_match",
            after=("policy_shape_and_contract_valid", "serving_mode_declared"),
        ),
    ),
    sources=(
        Source(
            input="policyPath",
            source="policy",
            owner="serving.policy.contract_valid",
            file="policy",
            extra=("schemaVersion",),
        ),
        Source(
            input="boundaryDocPath",
            source="boundaryDoc",
            owner="serving.boundary_doc.complete",
            file="boundaryDoc",
        ),
        Source(
            input="developmentDocPath",
            source="developmentDoc",
            owner="serving.development_doc.references_boundary",
            file="developmentDoc",
        ),
        Source(
            input="minimumTopologyDocPath",
            source="minimumTopologyDoc",
            owner="serving.topology_doc.references_boundary",
            file="minimumTopologyDoc",
        ),
        Source(
            input="selfHostComposePath",
            source="selfHostCompose",
            owner="serving.compose.secrets_fail_closed",
            file="compose",
        ),
        Source(
            input="helmValuesPath",
            source="helmValues",
            owner="serving.helm_values.inline_secrets_denied",
            file="helmValues",
        ),
    ),
)

_COMPOSE = ("compose_topology_present",)
SELF_HOST_TOPOLOGY_BUNDLE = UpstreamFormat(
    name="nooterra-self-host-topology-bundle",
    schema_version="SelfHostTopologyBundleGateReport.v1",
    hash_scope="SelfHostTopologyBundleGateDeterministicCore.v1",
    schema="nooterra-self-host-topology-bundle-gate-report",
    prefix="self_host_topology_bundle",
    rows=(
        Row(check="selfhost.compose.present", upstream="compose_topology_present"),
        Row(
            check="selfhost.compose.services_declared", upstream="required_services_declared", after=_COMPOSE
        ),
        Row(
            check="selfhost.compose.evidence_store_wired",
            upstream="api_evidence_store_wiring_present",
            after=_COMPOSE,
        ),
        Row(
            check="selfhost.compose.gateway_key_fail_closed",
            upstream="x402_gateway_api_key_fail_closed",
            after=_COMPOSE,
        ),
        Row(
            check="selfhost.compose.magic_link_bound",
            upstream="magic_link_nooterra_binding_present",
            after=_COMPOSE,
        ),
        Row(check="selfhost.env_example.required_keys", upstream="env_example_required_keys_present"),
    ),
    sources=(
        Source(input="composePath", source="compose", owner="selfhost.compose.present", file="compose"),
        Source(
            input="envExamplePath",
            source="envExample",
            owner="selfhost.env_example.required_keys",
            file="envExample",
        ),
    ),
)

_REPORT = ("self_host_topology_bundle_gate_green",)
SELF_HOST_UPGRADE_MIGRATION = UpstreamFormat(
    name="nooterra-self-host-upgrade-migration",
    schema_version="SelfHostUpgradeMigrationGateReport.v1",
    hash_scope="SelfHostUpgradeMigrationGateDeterministicCore.v1",
    schema="nooterra-self-host-upgrade-migration-gate-report",
    prefix="self_host_upgrade_migration",
    rows=(
        Row(check="upgrade.playbook.complete", upstream="upgrade_playbook_present_and_complete"),
        Row(check="upgrade.compose.migrate_on_startup", upstream="compose_migrate_on_startup_enabled"),
        Row(
            check="upgrade.helm_values.migrate_on_startup", upstream="helm_values_migrate_on_startup_enabled"
        ),
        Row(check="upgrade.api_template.migrate_env_wired", upstream="api_template_migrate_env_wired"),
        Row(
            check="upgrade.topology_report.green",
            upstream="self_host_topology_bundle_gate_green",
            code_on_pass="self_host_topology_bundle_not_green",
        ),
        Row(
            check="upgrade.topology_report.hash_valid",
            upstream="self_host_topology_bundle_artifact_hash_valid",
            after=_REPORT,
        ),
        Row(
            check="upgrade.topology_report.sources_current",
            upstream="self_host_topology_bundle_sources_current",
            after=_REPORT,
        ),
        Row(
            check="upgrade.topology_report.fresh",
            upstream="self_host_topology_bundle_report_fresh",
            after=_REPORT,
        ),
        *(
            Row(check=f"upgrade.drill.{check}", upstream=f"gates_drill_{upstream}", target=DRILL_TARGET)
            for check, upstream in (
                ("backup_manifest", "backup_manifest_recorded"),
                ("restore_matches", "restore_matches_source"),
                ("migration_advances", "migration_advances_schema_version"),
                ("rollback_restores", "rollback_restores_source"),
                ("scratch_removed", "scratch_objects_removed"),
                ("source_unchanged", "source_schema_unchanged"),
            )
        ),
    ),
    sources=(
        Source(input="playbookPath", source="playbook", owner="upgrade.playbook.complete", file="playbook"),
        Source(
            input="composePath", source="compose", owner="upgrade.compose.migrate_on_startup", file="compose"
        ),
        Source(
            input="helmValuesPath",
            source="helmValues",
            owner="upgrade.helm_values.migrate_on_startup",
            file="helmValues",
        ),
        Source(
            input="apiTemplatePath",
            source="apiTemplate",
            owner="upgrade.api_template.migrate_env_wired",
            file="apiTemplate",
        ),
        Source(
            input="topologyGateReportPath",
            source="topologyGate",
            owner="upgrade.topology_report.green",
            file="topologyReport",
            extra=("schemaVersion", "verdictOk", "artifactHash"),
        ),
    ),
)

FORMATS = (SERVING_MODE_BOUNDARY, SELF_HOST_TOPOLOGY_BUNDLE, SELF_HOST_UPGRADE_MIGRATION)
