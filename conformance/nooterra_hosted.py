"""Pure rules behind the Nooterra hosted-baseline probes (digest §4.1): the S8 approval rollout guard,
the billing plan catalog, and what of an observed body is evidence.

No I/O here. The checks apply these rules to what the API answered, and the
``HostedBaselineEvidence.v1`` report format re-applies them to the recorded observations, so a check
and the report row it feeds can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

HUMAN_APPROVAL_POLICY_VERSION = "NooterraHumanApprovalPolicy.v1"
BILLING_CATALOG_VERSION = "BillingPlanCatalog.v1"
BILLING_PLANS = ("free", "builder", "growth", "enterprise")
BILLING_NUMERIC_FIELDS = (
    "subscriptionCents",
    "includedVerifiedRunsPerMonth",
    "verifiedRunOverageMilliCents",
    "settledVolumeFeeBps",
    "arbitrationCaseFeeCents",
    "hardLimitVerifiedRunsPerMonth",
)
MAX_SAFE_INTEGER = 2**53 - 1

# Members of an observed body that change with every capture although nothing about the deployment
# changed: a latency, the ticks of a loop. They stay out of the evidence so its hash is reproducible.
HEALTHZ_CLOCKS = frozenset({"dbLatencyMs", "autotickLastTickAt", "autotickLastSuccessAt"})
JOB_COUNTERS = frozenset({"runs", "failures"})

S8_ENABLED_PREFIX = "S8 approval enforcement is enabled; "
S8_MESSAGES = {
    None: "S8 approval enforcement is enabled with explicit policy shape.",
    "disabled": "S8 approval enforcement toggle is disabled.",
    "s8_rollout_config_missing": "S8 rollout config is missing; config.s8Approval must be a plain object.",
    "s8_approval_policy_missing": S8_ENABLED_PREFIX + "config.s8Approval.policy must be a plain object.",
    "s8_approval_policy_schema_invalid": S8_ENABLED_PREFIX
    + f"config.s8Approval.policy.schemaVersion must be {HUMAN_APPROVAL_POLICY_VERSION}.",
    "s8_approval_policy_threshold_invalid": S8_ENABLED_PREFIX
    + "config.s8Approval.policy.requireApprovalAboveCents must be a safe integer >= 0.",
    "s8_approval_policy_strict_evidence_refs_invalid": S8_ENABLED_PREFIX
    + "config.s8Approval.policy.strictEvidenceRefs must be a boolean.",
    "s8_approval_policy_action_types_invalid": S8_ENABLED_PREFIX
    + "config.s8Approval.policy.highRiskActionTypes must be a non-empty array.",
}


def utf16_key(text: str) -> bytes:
    """Sort key equal to JavaScript's default ``Array.prototype.sort`` order for strings."""
    return text.encode("utf-16-be", errors="surrogatepass")


def sorted_unique(values: list[str]) -> list[str]:
    """Upstream's ``normalizeStringList``: trimmed, non-empty, unique, in JavaScript sort order."""
    return sorted({v.strip() for v in values if v.strip()}, key=utf16_key)


def is_safe_integer(value: Any) -> TypeGuard[int | float]:
    """JavaScript's ``Number.isSafeInteger`` for a JSON value (``5.0`` is one; ``true`` is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float) and not value.is_integer():
        return False
    return abs(value) <= MAX_SAFE_INTEGER


def is_number(value: Any) -> bool:
    """A finite JSON number (a boolean or a numeric string is not one)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return value == value and value not in (float("inf"), float("-inf"))


def s8_rollout(s8_approval: Any) -> dict[str, Any]:
    """The S8 approval rollout guard over ``config.s8Approval`` (``checks.s8ApprovalRollout``).

    Passes when enforcement of ``x402 authorize-payment`` is off; when it is on, the policy must be
    a plain object of explicit shape. The first rule broken names the failure code.
    """
    if not isinstance(s8_approval, Mapping):
        return _rollout(None, False, False, "s8_rollout_config_missing", None)
    enforce = s8_approval.get("enforceX402AuthorizePayment")
    policy = s8_approval.get("policy")
    present = isinstance(policy, Mapping)
    code = _policy_problem(policy) if isinstance(policy, Mapping) else "s8_approval_policy_missing"
    valid = present and code is None
    if enforce is not True:
        return _rollout(enforce if isinstance(enforce, bool) else None, present, valid, None, None, off=True)
    if code is not None or not isinstance(policy, Mapping):
        return _rollout(True, present, False, code, None)
    summary = {
        "schemaVersion": policy.get("schemaVersion"),
        "requireApprovalAboveCents": policy["requireApprovalAboveCents"],
        "strictEvidenceRefs": policy["strictEvidenceRefs"],
        "highRiskActionTypesCount": len(policy["highRiskActionTypes"]),
    }
    return _rollout(True, True, True, None, summary)


def _policy_problem(policy: Mapping[str, Any]) -> str | None:
    if "schemaVersion" in policy and policy["schemaVersion"] != HUMAN_APPROVAL_POLICY_VERSION:
        return "s8_approval_policy_schema_invalid"
    threshold = policy.get("requireApprovalAboveCents")
    if not is_safe_integer(threshold) or threshold < 0:
        return "s8_approval_policy_threshold_invalid"
    if not isinstance(policy.get("strictEvidenceRefs"), bool):
        return "s8_approval_policy_strict_evidence_refs_invalid"
    types = policy.get("highRiskActionTypes")
    if not isinstance(types, list) or not types:
        return "s8_approval_policy_action_types_invalid"
    return None


def _rollout(
    enforce: bool | None,
    present: bool,
    valid: bool,
    code: str | None,
    summary: dict[str, Any] | None,
    *,
    off: bool = False,
) -> dict[str, Any]:
    return {
        "ok": code is None,
        "enforceX402AuthorizePayment": enforce,
        "policyPresent": present,
        "policyShapeValid": valid,
        "failureCode": code,
        "message": S8_MESSAGES["disabled" if off else code],
        "policySummary": summary,
    }


def s8_config_summary(s8_approval: Any) -> dict[str, Any] | None:
    """``checks.opsConfig.s8Approval``: the enforcement toggle and whether a policy is configured."""
    if not isinstance(s8_approval, Mapping):
        return None
    return {
        "enforceX402AuthorizePayment": s8_approval.get("enforceX402AuthorizePayment"),
        "policyConfigured": s8_approval.get("policyConfigured"),
    }


def billing_validation(body: Any) -> dict[str, Any]:
    """``checks.billingCatalog.validation`` for a ``GET /ops/finance/billing/catalog`` answer of 200.

    ``BillingPlanCatalog.v1`` with the four launch plans, each with ``planId`` equal to its key, a
    non-empty ``displayName`` and every launch field a finite JSON number. Stricter than upstream's
    ``Number(value)`` coercion, which lets ``null``, ``""`` and numeric strings through.
    """
    failures: list[str] = []
    catalog = body if isinstance(body, Mapping) else {}
    version = catalog.get("schemaVersion")
    if version != BILLING_CATALOG_VERSION:
        failures.append(f"catalog.schemaVersion must be {BILLING_CATALOG_VERSION}")
    plans = catalog.get("plans")
    if not isinstance(plans, Mapping):
        failures.append("catalog.plans must be an object")
        plans = {}
    for plan_id in BILLING_PLANS:
        plan = plans.get(plan_id)
        if not isinstance(plan, Mapping):
            failures.append(f"missing plan {plan_id}")
            continue
        if plan.get("planId") != plan_id:
            failures.append(f"plan {plan_id} planId must be {plan_id}")
        name = plan.get("displayName")
        if not isinstance(name, str) or not name.strip():
            failures.append(f"plan {plan_id} missing displayName")
        failures.extend(
            f"plan {plan_id} missing numeric {field}"
            for field in BILLING_NUMERIC_FIELDS
            if not is_number(plan.get(field))
        )
    return {
        "ok": not failures,
        "failures": failures,
        "summary": {
            "schemaVersion": version if isinstance(version, str) else None,
            "planIds": sorted((str(k) for k in plans), key=utf16_key),
        },
    }


def billing_request_failed() -> dict[str, Any]:
    """``validation`` when the catalog request did not answer 200 (upstream records no summary then)."""
    return {"ok": False, "failures": ["catalog request failed"]}


def healthz_evidence(body: Any) -> Any:
    """The /healthz body as evidence: everything but its latency and loop ticks."""
    if not isinstance(body, Mapping):
        return body
    return {k: v for k, v in body.items() if k not in HEALTHZ_CLOCKS}


def ops_status_summary(body: Any) -> dict[str, Any] | None:
    """``checks.opsStatus.summary``: when the process started and each maintenance job's state.

    Upstream keeps ``process.startedAt`` only (not the uptime); likewise each job keeps what it is
    (enabled, whether its last run succeeded, its interval) but not its clock: the ``...At`` times
    and run counters move with every pass of the loop while nothing about the deployment changes.
    """
    if not isinstance(body, Mapping):
        return None
    process = body.get("process")
    started = process.get("startedAt") if isinstance(process, Mapping) else None
    maintenance = body.get("maintenance")
    if isinstance(maintenance, Mapping):
        maintenance = {
            str(job): {k: v for k, v in state.items() if not _is_clock(k)}
            if isinstance(state, Mapping)
            else state
            for job, state in maintenance.items()
        }
    return {
        "process": {"startedAt": started.strip() or None if isinstance(started, str) else None},
        "maintenance": maintenance,
    }


def _is_clock(key: str) -> bool:
    return key.endswith("At") or key in JOB_COUNTERS


def schedulers_enabled(body: Any) -> bool:
    """Finance and money-rail reconciliation are both enabled (upstream's required schedulers)."""
    maintenance = body.get("maintenance") if isinstance(body, Mapping) else None
    if not isinstance(maintenance, Mapping):
        return False
    return all(
        isinstance(maintenance.get(job), Mapping) and maintenance[job].get("enabled") is True
        for job in ("financeReconciliation", "moneyRailReconciliation")
    )
