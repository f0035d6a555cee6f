"""x402.receipt.{present,identity,kernel_hashes,kernel_invariants,http_bindings}: one record, its ids, its
SettlementKernel.v1 hashes and invariants, and the request/response it binds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from conformance import x402
from conformance.canonical import CanonicalJsonError
from conformance.paidcall.common import (
    Finding,
    evidence_ref,
    fails,
    int_or_none,
    judge,
    obj,
    offer_of,
    paid_2xx,
    passes,
    receipt_of,
    receipts_of,
    response_hash,
)
from conformance.paidcall.evidence import (
    GATE,
    RECEIPT_VERSION,
    RECEIPTS,
    PaidCallEvidence,
)


def receipt_present(e: PaidCallEvidence) -> list[Finding]:
    """Exactly one X402ReceiptRecord.v1 is stored for the run ``x402_<gateId>``."""
    found = receipts_of(e)
    seen = (e.visibility or {}).get(RECEIPTS)
    waited = (
        f" ({seen['attempts']} reads over {seen['waitedMs']} ms, budget {seen['budgetMs']} ms)"
        if seen
        else ""
    )
    if not found:
        return [
            fails(
                "receipt.count",
                "receipt_missing",
                f"no receipt is stored for run {e.run_id}{waited}",
                observed={"count": 0, "visibility": seen},
                expected=1,
            )
        ]
    out = [
        judge(
            "receipt.count",
            len(found) == 1,
            "receipt_duplicated",
            f"{len(found)} receipts are stored for run {e.run_id}",
            observed={"count": len(found), "visibility": seen},
            expected=1,
            passed=f"one receipt for run {e.run_id}{waited}",
        )
    ]
    for i, r in enumerate(found):
        record = obj(r)
        out.append(
            judge(
                f"receipt[{i}].schema",
                record.get("schemaVersion") == RECEIPT_VERSION,
                "receipt_schema_invalid",
                f"receipt {i} has schemaVersion {record.get('schemaVersion')!r}",
                observed=record.get("schemaVersion"),
                expected=RECEIPT_VERSION,
            )
        )
        out.append(
            judge(
                f"receipt[{i}].run",
                record.get("runId") == e.run_id,
                "receipt_run_mismatch",
                f"receipt {i} belongs to run {record.get('runId')!r}, not {e.run_id}",
                observed=record.get("runId"),
                expected=e.run_id,
            )
        )
    return out


def receipt_identity(e: PaidCallEvidence) -> list[Finding]:
    """The record's ids and states agree with the gate, the offer and the settlement receipt it embeds."""
    receipt = receipt_of(e)
    offer = offer_of(e)
    settlement, decision = obj(receipt.get("settlementReceipt")), obj(receipt.get("decisionRecord"))
    pairs = [
        ("receiptId", receipt.get("receiptId"), settlement.get("receiptId"), "receipt_id_mismatch"),
        ("gateId", receipt.get("gateId"), e.gate_id, "receipt_gate_mismatch"),
        ("runId", receipt.get("runId"), e.run_id, "receipt_run_mismatch"),
        ("tenantId", receipt.get("tenantId"), e.tenant, "receipt_tenant_mismatch"),
        ("providerId", receipt.get("providerId"), offer.provider_id, "receipt_provider_mismatch"),
        (
            "settlementState",
            receipt.get("settlementState"),
            settlement.get("status"),
            "receipt_state_inconsistent",
        ),
        (
            "verificationStatus",
            receipt.get("verificationStatus"),
            decision.get("verificationStatus"),
            "receipt_state_inconsistent",
        ),
    ]
    if offer.tool_id is not None:
        pairs.append(("toolId", receipt.get("toolId"), offer.tool_id, "receipt_tool_mismatch"))
    gate = e.exchange(GATE)
    body = gate.json() if gate is not None and gate.status == 200 else None
    if isinstance(body, dict) and isinstance(body.get("gate"), dict):
        pairs.append(
            (
                "payerAgentId",
                receipt.get("payerAgentId"),
                body["gate"].get("payerAgentId"),
                "receipt_payer_mismatch",
            )
        )
    return [
        judge(
            f"receipt.{name}",
            got == want and got is not None,
            code,
            f"the receipt's {name} is {got!r}, expected {want!r}",
            observed=got,
            expected=want,
            passed=f"{name} {got}",
        )
        for name, got, want, code in pairs
    ]


_HASH_CODES = frozenset(
    {
        "decision_record_hash_invalid",
        "decision_record_hash_mismatch",
        "settlement_receipt_hash_invalid",
        "settlement_receipt_hash_mismatch",
        "decision_record_missing",
        "settlement_receipt_missing",
    }
)


def _recomputed(record: Mapping[str, Any], fn: Callable[[Mapping[str, Any]], str]) -> str | None:
    try:
        return fn(record)
    except CanonicalJsonError:
        return None


def receipt_kernel_hashes(e: PaidCallEvidence) -> list[Finding]:
    """decisionHash and receiptHash recompute from the records they seal (SettlementKernel.v1)."""
    receipt = receipt_of(e)
    decision, settlement = receipt.get("decisionRecord"), receipt.get("settlementReceipt")
    errors = [c for c in x402.kernel_errors(decision, settlement) if c in _HASH_CODES]
    observed = {
        "decisionHash": obj(decision).get("decisionHash"),
        "receiptHash": obj(settlement).get("receiptHash"),
    }
    expected = {
        "decisionHash": _recomputed(obj(decision), x402.decision_hash),
        "receiptHash": _recomputed(obj(settlement), x402.receipt_hash),
    }
    if not errors:
        return [passes("receipt.kernel_hashes", "decisionHash and receiptHash recompute", observed, expected)]
    return [
        fails(
            "receipt.kernel_hashes",
            code,
            f"{code}: the stored hash does not seal the record's content",
            observed=observed,
            expected=expected,
        )
        for code in errors
    ]


def receipt_kernel_invariants(e: PaidCallEvidence) -> list[Finding]:
    """The receipt binds the decision (decisionRef), both name the run and settlement, and time runs forward."""
    receipt = receipt_of(e)
    settlement_id = None
    gate = e.exchange(GATE)
    body = gate.json() if gate is not None and gate.status == 200 else None
    if isinstance(body, dict) and isinstance(body.get("settlement"), dict):
        settlement_id = body["settlement"].get("settlementId")
    errors = [
        c
        for c in x402.kernel_errors(
            receipt.get("decisionRecord"),
            receipt.get("settlementReceipt"),
            run_id=e.run_id,
            settlement_id=settlement_id,
        )
        if c not in _HASH_CODES
    ]
    decision, settlement = obj(receipt.get("decisionRecord")), obj(receipt.get("settlementReceipt"))
    observed = {
        "decisionRef": settlement.get("decisionRef"),
        "decision": {
            k: decision.get(k)
            for k in ("decisionId", "decisionHash", "runId", "settlementId", "decidedAt", "policyHashUsed")
        },
        "receipt": {k: settlement.get(k) for k in ("runId", "settlementId", "createdAt", "settledAt")},
    }
    if not errors:
        return [
            passes(
                "receipt.kernel_invariants",
                "the receipt binds the decision; run, settlement and time agree",
                observed,
            )
        ]
    return [
        fails(
            "receipt.kernel_invariants",
            code,
            f"SettlementKernel.v1: {code}",
            observed=observed,
            expected={"run": e.run_id, "settlementId": settlement_id},
        )
        for code in errors
    ]


def _binding(prop: str, kind: str, what: str, got: Mapping[str, Any], want: Any, passed: str) -> Finding:
    """One bound value, given as an evidence ref and/or a binding field: absent and different are two findings.

    A receipt may carry a value in either place: upstream's API fills ``bindings.response.status`` only
    from a ``responseStatus`` its gateway never sends (``src/api/app.js:57599-57604``), while the
    gateway's evidence refs carry ``http:status:`` (``services/x402-gateway/src/server.js:974``). So
    one place suffices; none is an absent binding, a differing one a mismatch.
    """
    present = {k: v for k, v in got.items() if v is not None}
    if not present:
        return fails(prop, f"{kind}_binding_absent", f"{what}: the receipt binds none (no evidence ref, no binding)",
                     observed=dict(got), expected=want)  # fmt: skip
    wrong = {k: v for k, v in present.items() if v != want}
    if wrong:
        return fails(prop, f"{kind}_binding_mismatch",
                     f"{what}: " + ", ".join(f"{k} {v}" for k, v in wrong.items()) + f", expected {want}",
                     observed=dict(got), expected=want)  # fmt: skip
    absent = sorted(k for k in got if k not in present)
    return passes(prop, passed + (f" (no {', '.join(absent)})" if absent else ""), dict(got), want)


def receipt_http_bindings(e: PaidCallEvidence) -> list[Finding]:
    """The receipt binds the request the suite sent and the response it received (hashes and status)."""
    receipt = receipt_of(e)
    paid = paid_2xx(e)
    request = x402.request_binding_sha256("GET", e.upstream_host, e.path)
    response = response_hash(e)
    bindings = obj(receipt.get("bindings"))
    decision_bindings = obj(obj(receipt.get("decisionRecord")).get("bindings"))
    out = []
    for label, source in (("record", bindings), ("decisionRecord", decision_bindings)):
        if label == "decisionRecord" and not source:
            continue  # the decision record need not repeat the bindings
        got_req = {
            "evidenceRef": evidence_ref(receipt, "http:request_sha256:"),
            "binding": obj(source.get("request")).get("sha256"),
        }
        out.append(
            _binding(
                f"receipt.{label}.request",
                "request_hash",
                f"the {label}'s request hash for GET {e.upstream_host}{e.path} as the suite sent it",
                got_req,
                request,
                f"request {request}",
            )
        )
        got_resp = {
            "evidenceRef": evidence_ref(receipt, "http:response_sha256:"),
            "binding": obj(source.get("response")).get("sha256"),
        }
        out.append(
            _binding(
                f"receipt.{label}.response",
                "response_hash",
                f"the {label}'s hash of the body the suite received",
                got_resp,
                response,
                f"response {response}",
            )
        )
        got_status = {
            "evidenceRef": int_or_none(evidence_ref(receipt, "http:status:")),
            "binding": obj(source.get("response")).get("status"),
        }
        out.append(
            _binding(
                f"receipt.{label}.status",
                "response_status",
                f"the {label}'s response status (the suite received {paid.status})",
                got_status,
                paid.status,
                f"status {paid.status}",
            )
        )
    return out
