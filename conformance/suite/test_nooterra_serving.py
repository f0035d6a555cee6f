"""Nooterra serving-mode boundary: the policy, the docs and charts that carry it, and the declared mode, fail-closed."""

from __future__ import annotations

from conformance import nooterra as rules
from conformance.checks import check
from conformance.errors import Undetermined
from conformance.nooterra import FileRead
from conformance.profile import Bundle, Profile
from conformance.suite._nooterra import bundle_with, conclude, json_of, read

_POLICY = "serving.policy.contract_valid[bundle]"
_DECLARED = "serving.mode.declared[bundle]"


@check(
    "serving.policy.contract_valid",
    title="The serving-mode boundary policy is complete and fail-closed",
    targets=bundle_with("policy"),
    observe=read("policy"),
    remediation="Restore the serving-mode policy (NooterraServingModeBoundaryPolicy.v1): every mode, global check, "
    "reason code and parity control, local-dev barred from customer traffic and cutover.",
)
def test_policy_contract_valid(target: Bundle, obs: FileRead) -> None:
    """The policy is JSON of its schema version with no contract problem."""
    conclude(rules.policy_shape_and_contract_valid(obs), expected={"problems": []})


@check(
    "serving.boundary_doc.complete",
    title="The serving-modes boundary doc names the policy, the three modes and fail-closed",
    targets=bundle_with("boundaryDoc"),
    observe=read("boundaryDoc"),
    remediation="Restore docs/ops/SERVING_MODES_BOUNDARY.md with its title, the policy's schema version, hosted, "
    "self-host, local-dev and the fail-closed rule.",
)
def test_boundary_doc_complete(target: Bundle, obs: FileRead) -> None:
    """The boundary doc exists and matches every required pattern."""
    conclude(rules.boundary_doc_present_and_referenced(obs), expected={"missingPatterns": []})


@check(
    "serving.development_doc.references_boundary",
    title="The development doc points at the serving-modes boundary contract",
    targets=bundle_with("developmentDoc"),
    observe=read("developmentDoc"),
    remediation="Reference docs/ops/SERVING_MODES_BOUNDARY.md from docs/DEVELOPMENT.md.",
)
def test_development_doc_references_boundary(target: Bundle, obs: FileRead) -> None:
    """The development doc mentions docs/ops/SERVING_MODES_BOUNDARY.md."""
    conclude(
        rules.development_doc_references_mode_boundary_contract(obs),
        expected="docs/ops/SERVING_MODES_BOUNDARY.md",
    )


@check(
    "serving.topology_doc.references_boundary",
    title="The minimum production topology doc points at the serving-modes boundary contract",
    targets=bundle_with("minimumTopologyDoc"),
    observe=read("minimumTopologyDoc"),
    remediation="Reference docs/ops/SERVING_MODES_BOUNDARY.md from docs/ops/MINIMUM_PRODUCTION_TOPOLOGY.md.",
)
def test_topology_doc_references_boundary(target: Bundle, obs: FileRead) -> None:
    """The minimum topology doc mentions docs/ops/SERVING_MODES_BOUNDARY.md."""
    conclude(
        rules.minimum_topology_doc_references_mode_boundary_contract(obs),
        expected="docs/ops/SERVING_MODES_BOUNDARY.md",
    )


@check(
    "serving.compose.secrets_fail_closed",
    title="The self-host compose refuses inline secrets and requires the ops token",
    targets=bundle_with("compose"),
    observe=read("compose"),
    remediation='Set PROXY_ALLOW_INLINE_SECRETS: "0" and PROXY_OPS_TOKENS: "${NOOTERRA_OPS_TOKEN:?...}:..." on the '
    "api service.",
)
def test_compose_secrets_fail_closed(target: Bundle, obs: FileRead) -> None:
    """Inline secrets are denied and the ops token substitution is fail-closed."""
    conclude(
        rules.self_host_compose_enforces_fail_closed_secret_contract(obs),
        expected={"enforceNoInlineSecrets": True, "opsTokenFailClosed": True},
    )


@check(
    "serving.helm_values.inline_secrets_denied",
    title="The Helm chart's receiver refuses inline secrets by default",
    targets=bundle_with("helmValues"),
    observe=read("helmValues"),
    remediation="Set allowInlineSecrets: false for the receiver in the chart's values.yaml.",
)
def test_helm_values_inline_secrets_denied(target: Bundle, obs: FileRead) -> None:
    """The chart defaults allowInlineSecrets to false."""
    conclude(rules.helm_values_enforce_receiver_inline_secret_deny(obs), expected="allowInlineSecrets: false")


@check(
    "serving.mode.declared",
    title="The deployment declares a serving mode the policy allows",
    targets=bundle_with("policy"),
    observe=read("policy"),
    remediation="Declare the serving mode explicitly: --set serving_mode=self-host (or hosted), or "
    "GATES_NOOTERRA_SERVING_MODE.",
)
def test_serving_mode_declared(target: Bundle, obs: FileRead, profile: Profile) -> None:
    """servingMode is set and is one of the policy's allowedModes (reason codes from the policy)."""
    policy = json_of(obs, _POLICY)
    conclude(rules.serving_mode_declared(policy, profile.serving_mode), expected="hosted or self-host")


@check(
    "serving.mode.production_eligible",
    title="The declared serving mode may carry production customer traffic",
    targets=bundle_with("policy"),
    observe=read("policy"),
    remediation="local-dev never serves production traffic: deploy and certify the hosted or self-host topology.",
)
def test_serving_mode_production_eligible(target: Bundle, obs: FileRead, profile: Profile) -> None:
    """The mode's trust boundary and parity row admit customer traffic and cutover (fail-closed)."""
    policy = json_of(obs, _POLICY)
    if not rules.serving_mode_declared(policy, profile.serving_mode).ok:
        raise Undetermined(f"no valid serving mode is declared; see {_DECLARED}")
    conclude(
        rules.serving_mode_contract_match(policy, profile.serving_mode or ""),
        expected={"reasonCodes": []},
    )
