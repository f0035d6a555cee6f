"""One paid tool call through an x402 gateway, as evidence, and the properties it must have.

`PaidCallEvidence` is everything the suite sent and received for one paid call: the first call
(402 with the offer and a gate id), the paid retry (200 with the settlement headers), the provider's
keyset, the API's NooterraPay keyset, the gate state, the receipts of the run, and the replay audit
(the settled gate id replayed once, gate state and receipts fetched again, the receipt re-fetched by
id). It is plain data -- the probe builds it live, the bundle loader rebuilds it from files -- and
the properties below are pure functions of it, so `gates run` and `gates verify-receipt` reach the
same verdicts. Each check id maps to one evaluator returning `Finding` values; an evaluator that
lacks a prerequisite raises `Undetermined` (the check errors) or `SpendNotAllowed` (the run did not
allow the spend), never a pass.

Nothing is taken on the operator's word: hashes and signatures are recomputed (`conformance.x402`),
the provider's signatures are checked under the keys pinned in the profile rather than the key the
receipt embeds, and the receipt's request/response bindings are compared with what the suite itself
sent and received. The one input the bundle cannot hold is the NooterraPay token (a payment
credential): its signature is verified live and the result recorded; offline, the token's recorded
claims and hash bindings are checked again and its signature is reported as not repeatable.
"""

from __future__ import annotations

from collections.abc import Callable

from conformance.errors import Undetermined
from conformance.paidcall.common import Finding, Offer, offer_of, pinned_keys, receipt_of, response_hash
from conformance.paidcall.evidence import (
    API_KEYSET,
    FIRST,
    GATE,
    GATE_AFTER,
    PAID,
    PROVIDER_KEYSET,
    RECEIPT_BY_ID,
    RECEIPT_VERSION,
    RECEIPTS,
    RECEIPTS_AFTER,
    REPLAY,
    STEPS,
    Exchange,
    PaidCallEvidence,
    TokenFacts,
)
from conformance.paidcall.offer import (
    offer_gate_id,
    offer_headers_agree,
    offer_payment_required,
    offer_quote_valid,
    offer_within_spend_cap,
)
from conformance.paidcall.paid import (
    paid_amounts,
    paid_provider_key_pinned,
    paid_provider_signature,
    paid_released,
    paid_response_sha256,
    paid_settled,
)
from conformance.paidcall.receipt import (
    receipt_http_bindings,
    receipt_identity,
    receipt_kernel_hashes,
    receipt_kernel_invariants,
    receipt_present,
)
from conformance.paidcall.receipt_keys import (
    receipt_key_evidence,
    receipt_provider_signature,
    receipt_quote_signature,
)
from conformance.paidcall.receipt_terms import receipt_amounts, receipt_headers_agree, receipt_pay_token
from conformance.paidcall.replay import replay_refetch_stable, replay_settles_once

__all__ = [
    "API_KEYSET",
    "FIRST",
    "GATE",
    "GATE_AFTER",
    "PAID",
    "PROPERTIES",
    "PROVIDER_KEYSET",
    "RECEIPTS",
    "RECEIPTS_AFTER",
    "RECEIPT_BY_ID",
    "RECEIPT_VERSION",
    "REPLAY",
    "STEPS",
    "Exchange",
    "Finding",
    "Offer",
    "PaidCallEvidence",
    "TokenFacts",
    "evaluate",
    "offer_of",
    "pinned_keys",
    "receipt_of",
    "response_hash",
]

# --- registry ---------------------------------------------------------------------------------

PROPERTIES: dict[str, Callable[[PaidCallEvidence], list[Finding]]] = {
    "x402.offer.payment_required": offer_payment_required,
    "x402.offer.headers_agree": offer_headers_agree,
    "x402.offer.gate_id": offer_gate_id,
    "x402.offer.quote_valid": offer_quote_valid,
    "x402.offer.within_spend_cap": offer_within_spend_cap,
    "x402.paid.settled": paid_settled,
    "x402.paid.released": paid_released,
    "x402.paid.response_sha256": paid_response_sha256,
    "x402.paid.provider_signature": paid_provider_signature,
    "x402.paid.provider_key_pinned": paid_provider_key_pinned,
    "x402.paid.amounts": paid_amounts,
    "x402.receipt.present": receipt_present,
    "x402.receipt.identity": receipt_identity,
    "x402.receipt.kernel_hashes": receipt_kernel_hashes,
    "x402.receipt.kernel_invariants": receipt_kernel_invariants,
    "x402.receipt.http_bindings": receipt_http_bindings,
    "x402.receipt.provider_signature": receipt_provider_signature,
    "x402.receipt.key_evidence": receipt_key_evidence,
    "x402.receipt.quote_signature": receipt_quote_signature,
    "x402.receipt.pay_token": receipt_pay_token,
    "x402.receipt.amounts": receipt_amounts,
    "x402.receipt.headers_agree": receipt_headers_agree,
    "x402.replay.refetch_stable": replay_refetch_stable,
    "x402.replay.settles_once": replay_settles_once,
}


def evaluate(check_id: str, evidence: PaidCallEvidence) -> list[Finding]:
    """The findings of one check id; `Undetermined`/`SpendNotAllowed` propagate (the check cannot be decided)."""
    findings = PROPERTIES[check_id](evidence)
    if not findings:  # every evaluator reports at least one property; an empty list would read as a pass
        raise Undetermined(f"{check_id}: no property was evaluated")
    return findings
