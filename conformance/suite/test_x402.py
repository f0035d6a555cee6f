"""One paid tool call through the x402 gateway, end to end, and its receipt verified without trusting the operator.

The suite is the client (`conformance.probes.x402.PaidToolCall`): first call → 402 with the offer and a
gate id; retry with the gate id → 200 with the settlement headers; then the gate state, the receipts of
the run and a replay of the settled gate id. Every check here is one group of properties of that single
call (`conformance.paidcall`), which `gates verify-receipt` re-checks offline from the artifact bundle.
They pay, so they run only with ``--allow-spend-cents``.
"""

from __future__ import annotations

from collections.abc import Callable

from conformance import paidcall
from conformance.checks import check, expect
from conformance.paidcall import PaidCallEvidence
from conformance.paidcall_bundle import SUBDIR, directory_name
from conformance.probes.x402 import PaidToolCall
from conformance.profile import PaidCall, Profile


def paid_calls(profile: Profile) -> list[PaidCall]:
    """The profile's paid tool routes."""
    return list(profile.paid_calls)


def paid_call(_: Profile, call: PaidCall) -> PaidToolCall:
    """The one paid call every check of a route shares."""
    return PaidToolCall(
        name=call.name,
        gateway=call.gateway,
        path=call.path,
        api=call.api,
        upstream=call.upstream,
        provider_keyset=call.provider_keyset,
        pinned_key_ids=call.pinned_key_ids,
        holdback_bps=call.holdback_bps,
        tenant=call.tenant,
        ops_token=call.ops_token,
        run_param=call.run_param,
        visibility_budget_s=call.visibility_budget_s,
    )


def conclude(check_id: str, evidence: PaidCallEvidence) -> None:
    """Fail with the first failing property (naming the others), or pass with what each property showed."""
    __tracebackhide__ = True
    findings = paidcall.evaluate(check_id, evidence)
    failed = [f for f in findings if f.status == "fail"]
    bundle = f"{SUBDIR}/{directory_name(evidence)}"
    if failed:
        first = failed[0]
        more = f" (also: {', '.join(f.code or f.prop for f in failed[1:])})" if len(failed) > 1 else ""
        expect(
            False,
            f"{first.message}{more}",
            reason=first.code or "failed",
            observed={"bundle": bundle, **{f.prop: f.observed for f in failed}},
            expected={f.prop: f.expected for f in failed},
        )
    expect(
        True,
        "conforms",
        reason="",
        observed={"bundle": bundle, **{f.prop: f.message for f in findings}},
        expected=None,
    )


def _check(
    check_id: str, title: str, remediation: str
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return check(
        check_id, title=title, targets=paid_calls, observe=paid_call, remediation=remediation, spends=True
    )


# --- paid-call-e2e ----------------------------------------------------------------------------


@_check(
    "x402.offer.payment_required",
    "The paid route answers an unpaid call 402 with a parseable offer",
    "The provider must answer an unpaid call 402 Payment Required with x-payment-required (amountCents, currency, "
    "providerId, toolId) and x-nooterra-payment-error; check that the route really is behind the paywall.",
)
def test_offer_payment_required(target: PaidCall, obs: PaidCallEvidence) -> None:
    """The first call is refused with a 402 whose offer parses in either header form."""
    conclude("x402.offer.payment_required", obs)


@_check(
    "x402.offer.headers_agree",
    "Both offer headers carry the same offer as the 402 body",
    "Send the offer as both x-payment-required and PAYMENT-REQUIRED, with the same value, and repeat it in the body.",
)
def test_offer_headers_agree(target: PaidCall, obs: PaidCallEvidence) -> None:
    """x-payment-required and PAYMENT-REQUIRED are both present and agree with the body's offer."""
    conclude("x402.offer.headers_agree", obs)


@_check(
    "x402.offer.gate_id",
    "The gateway turns the offer into a hold and names its gate",
    "The gateway must create the gate (POST /x402/gate/create) for a parseable offer and add x-nooterra-gate-id "
    "to the 402; check its NOOTERRA_API_URL/NOOTERRA_API_KEY and the payer's funds.",
)
def test_offer_gate_id(target: PaidCall, obs: PaidCallEvidence) -> None:
    """The relayed 402 carries x-nooterra-gate-id."""
    conclude("x402.offer.gate_id", obs)


@_check(
    "x402.offer.quote_valid",
    "The provider's quote is signed by a published key, matches the offer and is unexpired",
    "The provider must sign its quote with a key its keyset publishes, quote exactly the offer (provider, tool, amount, "
    "currency, binding mode) and give it an expiry after the paid retry; check its clock and quote TTL.",
)
def test_offer_quote_valid(target: PaidCall, obs: PaidCallEvidence) -> None:
    """The x-nooterra-provider-quote verifies and binds to the offer."""
    conclude("x402.offer.quote_valid", obs)


@_check(
    "x402.offer.within_spend_cap",
    "The offer asks no more than the run allows to spend",
    "The provider asks more than this run may spend: check its price, or raise --allow-spend-cents if the price is right.",
)
def test_offer_within_spend_cap(target: PaidCall, obs: PaidCallEvidence) -> None:
    """The suite pays only an offer within --allow-spend-cents."""
    conclude("x402.offer.within_spend_cap", obs)


@_check(
    "x402.paid.settled",
    "The paid retry answers 2xx with complete settlement metadata",
    "The gateway must verify and settle before answering, and send x-nooterra-settlement-status, "
    "-verification-status, -policy-decision, -policy-hash and -decision-id; check its call to /x402/gate/verify.",
)
def test_paid_settled(target: PaidCall, obs: PaidCallEvidence) -> None:
    """The retry with the gate id is answered with every settlement header (the paid-tool contract)."""
    conclude("x402.paid.settled", obs)


@_check(
    "x402.paid.released",
    "The paid call succeeds: released, green, allow",
    "The verification was not green: look at x-nooterra-verification-codes (provider signature, response hash, key id) "
    "and the gateway's and provider's logs.",
)
def test_paid_released(target: PaidCall, obs: PaidCallEvidence) -> None:
    """Settlement released, verification green, policy decision allow."""
    conclude("x402.paid.released", obs)


@_check(
    "x402.paid.response_sha256",
    "x-nooterra-response-sha256 is the hash of the body delivered",
    "The gateway must report the hash of the body it relays (canonical JSON for JSON bodies, raw bytes otherwise).",
)
def test_paid_response_sha256(target: PaidCall, obs: PaidCallEvidence) -> None:
    """The response hash header recomputes from the body received."""
    conclude("x402.paid.response_sha256", obs)


@_check(
    "x402.paid.provider_signature",
    "The provider signed the delivered response with a published key",
    "The provider must sign H(ToolProviderSignaturePayload.v1) of the canonical response hash with the key its keyset "
    "publishes under x-nooterra-provider-key-id, and send all five x-nooterra-provider-* signature headers.",
)
def test_paid_provider_signature(target: PaidCall, obs: PaidCallEvidence) -> None:
    """The provider's Ed25519 signature verifies over the response hash the suite computed."""
    conclude("x402.paid.provider_signature", obs)


@_check(
    "x402.paid.provider_key_pinned",
    "The provider signs with a key the profile pins",
    "The provider signs with a key the profile does not pin: if it rotated its key, verify the new key out of band "
    "and add its id to paid.provider_key_ids; otherwise treat the responses as unauthenticated.",
)
def test_paid_provider_key_pinned(target: PaidCall, obs: PaidCallEvidence) -> None:
    """The quote and the response are signed by pinned provider keys whose published material matches their ids."""
    conclude("x402.paid.provider_key_pinned", obs)


@_check(
    "x402.paid.amounts",
    "Released and refunded amounts split the offer by the declared holdback",
    "released must be amount - floor(amount * HOLDBACK_BPS / 10000) and refunded the holdback (all refunded when red); "
    "check the gateway's HOLDBACK_BPS against paid.holdback_bps and the API's holdback arithmetic.",
)
def test_paid_amounts(target: PaidCall, obs: PaidCallEvidence) -> None:
    """The settlement headers' amounts follow the offer amount and HOLDBACK_BPS."""
    conclude("x402.paid.amounts", obs)


# --- receipt-verification ---------------------------------------------------------------------


@_check(
    "x402.receipt.present",
    "Exactly one X402ReceiptRecord.v1 is stored for the run",
    "The API must store one receipt per settled gate, listed by GET /x402/receipts?runId=x402_<gateId>; if it "
    "shows only after the suite stopped reading (see the observation's visibility), raise paid.visibility_budget.",
)
def test_receipt_present(target: PaidCall, obs: PaidCallEvidence) -> None:
    """The run has exactly one receipt."""
    conclude("x402.receipt.present", obs)


@_check(
    "x402.receipt.identity",
    "The receipt names this gate, run, tenant, provider and tool, and its states agree",
    "The X402ReceiptRecord.v1 must carry the ids of its settlement receipt and gate; check how the API builds it.",
)
def test_receipt_identity(target: PaidCall, obs: PaidCallEvidence) -> None:
    """receiptId, gateId, runId, tenant, provider, tool and states are the ones of this paid call."""
    conclude("x402.receipt.identity", obs)


@_check(
    "x402.receipt.kernel_hashes",
    "decisionHash and receiptHash recompute",
    "A stored hash that does not recompute means the record changed after it was sealed: find what rewrites "
    "decision records or receipts after settlement.",
)
def test_receipt_kernel_hashes(target: PaidCall, obs: PaidCallEvidence) -> None:
    """SettlementKernel.v1 hash integrity of the decision record and the settlement receipt."""
    conclude("x402.receipt.kernel_hashes", obs)


@_check(
    "x402.receipt.kernel_invariants",
    "The receipt binds its decision; run, settlement and time agree",
    "decisionRef must name the decision's id and hash, runId and settlementId must match across records, and "
    "decidedAt <= createdAt <= settledAt; the decision must carry a 64-hex policyHashUsed.",
)
def test_receipt_kernel_invariants(target: PaidCall, obs: PaidCallEvidence) -> None:
    """SettlementKernel.v1 binding, identity and temporal invariants."""
    conclude("x402.receipt.kernel_invariants", obs)


@_check(
    "x402.receipt.http_bindings",
    "The receipt binds the request sent and the response received",
    "The gateway's evidence refs and the receipt's bindings must hash the request as sent to the provider "
    '("GET\\n<upstream host>\\n<path?query>\\n<empty sha256>") and the response as delivered.',
)
def test_receipt_http_bindings(target: PaidCall, obs: PaidCallEvidence) -> None:
    """Request and response hashes and the status in the receipt are the suite's own."""
    conclude("x402.receipt.http_bindings", obs)


@_check(
    "x402.receipt.provider_signature",
    "The receipt's provider signature verifies under the pinned provider key",
    "The receipt must carry the provider's ToolProviderSignature.v1 made with a pinned key over the delivered "
    "response's hash; a receipt that only verifies under the key it embeds proves nothing.",
)
def test_receipt_provider_signature(target: PaidCall, obs: PaidCallEvidence) -> None:
    """The receipt's signature verifies under the pinned key, over the response received."""
    conclude("x402.receipt.provider_signature", obs)


@_check(
    "x402.receipt.key_evidence",
    "The receipt's embedded key evidence is consistent and bound",
    "VerificationKeyEvidence.v1 must give the key id of its PEM, its JWK and the hex H({crv,kty,x}) thumbprint, "
    "equal to bindings.providerSig's.",
)
def test_receipt_key_evidence(target: PaidCall, obs: PaidCallEvidence) -> None:
    """Key id, JWK and thumbprint of the embedded provider keys recompute and match the bindings."""
    conclude("x402.receipt.key_evidence", obs)


@_check(
    "x402.receipt.quote_signature",
    "The receipt's provider quote signature re-verifies as upstream's receipt verifier requires",
    "The receipt must carry the provider's ToolProviderQuoteSignature.v1 as the provider signed it (algorithm "
    "ed25519, keyId of a pinned key, payloadHash = H(ToolProviderQuotePayload.v1)), and bind the quote's hash and "
    "id; a gateway that rewrites the signature it hands on makes every receipt fail upstream's verifier.",
)
def test_receipt_quote_signature(target: PaidCall, obs: PaidCallEvidence) -> None:
    """The quote signature verifies offline, under a pinned key, and its hash and id are the bound ones."""
    conclude("x402.receipt.quote_signature", obs)


@_check(
    "x402.receipt.pay_token",
    "The NooterraPay token verifies under the API keyset and is the token bound",
    "Tokens must be signed by a key the API publishes at /.well-known/nooterra-keys.json, pay exactly the offer, live "
    "at most 300 s, and be the token whose sha256 the receipt and the provider bind.",
)
def test_receipt_pay_token(target: PaidCall, obs: PaidCallEvidence) -> None:
    """The gate's token verifies, carries the offer, and is bound by the receipt and the provider."""
    conclude("x402.receipt.pay_token", obs)


@_check(
    "x402.receipt.amounts",
    "The receipt settles the offer amount with the declared holdback",
    "The receipt and the gate must settle the offer's amount: released = amount - floor(amount * bps / 10000), "
    "the holdback re-locked; check fees or rounding the API applies.",
)
def test_receipt_amounts(target: PaidCall, obs: PaidCallEvidence) -> None:
    """Amount, split and holdback of the receipt and gate follow the offer and HOLDBACK_BPS."""
    conclude("x402.receipt.amounts", obs)


@_check(
    "x402.receipt.headers_agree",
    "The settlement headers the client got agree with the receipt",
    "The gateway must take every x-nooterra-* settlement header from the verify answer the receipt records.",
)
def test_receipt_headers_agree(target: PaidCall, obs: PaidCallEvidence) -> None:
    """No settlement header contradicts the receipt."""
    conclude("x402.receipt.headers_agree", obs)


@_check(
    "x402.replay.refetch_stable",
    "Re-fetching the receipt gives the same record",
    "Receipts must be stored once and served as stored; they must not be rebuilt (re-timed, re-hashed) on read.",
)
def test_replay_refetch_stable(target: PaidCall, obs: PaidCallEvidence) -> None:
    """The receipt fetched again by id and by run has the same hashes."""
    conclude("x402.replay.refetch_stable", obs)


@_check(
    "x402.replay.settles_once",
    "Replaying a settled gate does not settle it again",
    "A settled gate must answer its recorded decision: guard /x402/gate/verify against a second settlement "
    "(and keep one settlement per gate and kind in the database).",
)
def test_replay_settles_once(target: PaidCall, obs: PaidCallEvidence) -> None:
    """Replaying the gate id once adds no settlement, receipt or decision."""
    conclude("x402.replay.settles_once", obs)
