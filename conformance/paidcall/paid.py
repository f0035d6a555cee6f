"""x402.paid.*: the paid retry settled, released, hashed and signed as the offer and the pinned keys say."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from conformance import x402
from conformance.canonical import CanonicalJsonError
from conformance.errors import (
    Undetermined,
)
from conformance.paidcall.common import (
    Finding,
    fails,
    int_or_none,
    judge,
    offer_of,
    paid_2xx,
    paid_call,
    passes,
    provider_keys,
    response_hash,
)
from conformance.paidcall.evidence import (
    FIRST,
    SETTLEMENT_METADATA,
    SIGNATURE_HEADERS,
    Exchange,
    PaidCallEvidence,
)


def paid_settled(e: PaidCallEvidence) -> list[Finding]:
    """The paid retry answers 2xx for this gate with non-empty settlement metadata (the paid-tool contract)."""
    paid = paid_call(e)
    status = paid.status or 0
    out = [
        judge(
            "paid.status",
            200 <= status < 300,
            "paid_status_not_2xx",
            f"the retry with gate {e.gate_id} answered {status}: {paid.preview()}",
            observed=status,
            expected="2xx",
            passed=f"the paid retry answered {status}",
        )
    ]
    if not 200 <= status < 300:
        return out
    missing = [h for h in SETTLEMENT_METADATA if not (paid.header(h) or "").strip()]
    out.append(
        judge(
            "paid.metadata",
            not missing,
            "settlement_metadata_missing",
            f"the paid response lacks {', '.join(missing)} (NOOTERRA_POLICY_RUNTIME_METADATA_MISSING)",
            observed={h: paid.header(h) for h in SETTLEMENT_METADATA},
            expected="every header non-empty",
            passed="settlement, verification, policy decision, policy hash and decision id are present",
        )
    )
    decision = paid.header("x-nooterra-policy-decision")
    if decision:
        out.append(
            judge(
                "paid.policy_decision",
                decision in x402.POLICY_DECISIONS,
                "policy_decision_invalid",
                f"x-nooterra-policy-decision {decision!r} is not one of {', '.join(x402.POLICY_DECISIONS)}",
                observed=decision,
                expected=list(x402.POLICY_DECISIONS),
            )
        )
    policy_hash = paid.header("x-nooterra-policy-hash")
    if policy_hash:
        out.append(
            judge(
                "paid.policy_hash",
                x402.is_sha256_hex(policy_hash),
                "policy_hash_invalid",
                f"x-nooterra-policy-hash {policy_hash!r} is not 64 lowercase hex",
                observed=policy_hash,
                expected="64 hex",
            )
        )
    gate = paid.header("x-nooterra-gate-id")
    out.append(
        judge(
            "paid.gate_id",
            gate == e.gate_id,
            "gate_id_mismatch",
            f"the paid response names gate {gate!r}, not the gate the offer created",
            observed=gate,
            expected=e.gate_id,
            passed="the paid response names the offer's gate",
        )
    )
    return out


def paid_released(e: PaidCallEvidence) -> list[Finding]:
    """The paid call succeeded: payment released, verification green, policy decision allow, no reason codes."""
    paid = paid_2xx(e)
    settlement = paid.header("x-nooterra-settlement-status")
    if not settlement:
        raise Undetermined("the paid response carries no x-nooterra-settlement-status; see x402.paid.settled")
    observed = {
        "settlement": settlement,
        "verification": paid.header("x-nooterra-verification-status"),
        "decision": paid.header("x-nooterra-policy-decision"),
        "codes": paid.header("x-nooterra-verification-codes"),
    }
    expected = {"settlement": "released", "verification": "green", "decision": "allow", "codes": None}
    return [
        judge(
            "paid.released",
            observed == expected,
            "payment_not_released",
            f"the payment was not released: settlement {settlement}, verification {observed['verification']}, "
            f"decision {observed['decision']}, codes {observed['codes'] or 'none'}",
            observed=observed,
            expected=expected,
            passed="released, green, allow",
        )
    ]


def paid_response_sha256(e: PaidCallEvidence) -> list[Finding]:
    """x-nooterra-response-sha256 is the hash of the body the suite received (canonical JSON for JSON bodies)."""
    paid = paid_2xx(e)
    computed = response_hash(e)
    header = paid.header("x-nooterra-response-sha256")
    if not header:
        return [
            fails(
                "paid.response_sha256",
                "response_sha256_missing",
                "the paid response carries no x-nooterra-response-sha256",
                expected=computed,
            )
        ]
    return [
        judge(
            "paid.response_sha256",
            header == computed,
            "response_sha256_mismatch",
            f"x-nooterra-response-sha256 is {header}, the body received hashes to {computed}",
            observed=header,
            expected=computed,
            passed=f"the response hash {computed} recomputes",
        )
    ]


def _header_signature(paid: Exchange) -> dict[str, Any]:
    values = {h: paid.header(f"x-nooterra-provider-{h}") for h in SIGNATURE_HEADERS}
    claimed, nonce, signed_at = (str(values[k] or "") for k in ("response-sha256", "nonce", "signed-at"))
    try:
        payload = x402.provider_payload_hash(claimed, nonce, signed_at)
    except CanonicalJsonError:
        payload = ""
    return {
        "schemaVersion": "ToolProviderSignature.v1",
        "algorithm": "ed25519",
        "keyId": values["key-id"],
        "signedAt": signed_at,
        "nonce": nonce,
        "responseHash": claimed,
        "payloadHash": payload,
        "signatureBase64": values["signature"],
    }


def paid_provider_signature(e: PaidCallEvidence) -> list[Finding]:
    """The provider signed the response hash the suite computed, under a key its published keyset lists for that id."""
    paid = paid_2xx(e)
    missing = [
        f"x-nooterra-provider-{h}" for h in SIGNATURE_HEADERS if not paid.header(f"x-nooterra-provider-{h}")
    ]
    if missing:
        return [
            fails(
                "paid.provider_signature",
                "provider_signature_headers_missing",
                f"the paid response lacks {', '.join(missing)}",
                observed=missing,
                expected="all five signature headers",
            )
        ]
    keys = provider_keys(e)
    signature = _header_signature(paid)
    kid = str(signature["keyId"])
    if kid not in keys:
        return [
            fails(
                "paid.provider_signature",
                "provider_key_id_unknown",
                f"the response is signed by key {kid!r}, which the provider keyset does not publish",
                observed=kid,
                expected=sorted(keys),
            )
        ]
    computed = response_hash(e)
    try:
        x402.verify_provider_signature(signature, keys[kid].pem, response_hash=computed)
    except x402.VerificationError as exc:
        return [
            fails(
                "paid.provider_signature",
                exc.code,
                f"the provider signature does not vouch for this response: {exc.message}",
                observed={"keyId": kid, "responseHash": signature["responseHash"]},
                expected={"responseHash": computed},
            )
        ]
    return [passes("paid.provider_signature", f"signed by {kid} over {computed}", observed=kid)]


def paid_provider_key_pinned(e: PaidCallEvidence) -> list[Finding]:
    """The keys that signed the quote and the response are the provider keys the profile pins."""
    paid = paid_2xx(e)
    keys = provider_keys(e)
    used = {"response": paid.header("x-nooterra-provider-key-id")}
    first = e.exchange(FIRST)
    quote_sig = first.header("x-nooterra-provider-quote-signature") if first is not None else None
    if quote_sig:
        # an undecodable quote is x402.offer.quote_valid's finding
        with contextlib.suppress(x402.VerificationError, ValueError, AttributeError, UnicodeDecodeError):
            used["quote"] = json.loads(x402.b64url_decode(quote_sig)).get("keyId")
    out: list[Finding] = []
    lying = sorted(
        kid for kid in (e.pinned_key_ids or tuple(keys)) if kid in keys and keys[kid].fingerprint != kid
    )
    out.append(
        judge(
            "paid.pinned_material",
            not lying,
            "pinned_key_material_mismatch",
            f"the provider keyset lists key material under {', '.join(lying)} that hashes to another key id",
            observed={k: keys[k].fingerprint for k in lying},
            expected="each kid = key id of its PEM",
            passed="every trusted kid's published material hashes to that kid",
        )
    )
    trusted = set(e.pinned_key_ids) if e.pinned_key_ids else set(keys)
    for what, kid in sorted(used.items()):
        out.append(
            judge(
                f"paid.pinned[{what}]",
                kid in trusted,
                "provider_key_not_pinned",
                f"the {what} is signed by {kid!r}, which is not a provider key the profile pins",
                observed=kid,
                expected=sorted(trusted),
                passed=f"the {what} is signed by pinned key {kid}",
            )
        )
    return out


def paid_amounts(e: PaidCallEvidence) -> list[Finding]:
    """The settlement headers split the offer amount as the declared holdback dictates."""
    offer = offer_of(e)
    paid = paid_2xx(e)
    status = paid.header("x-nooterra-settlement-status")
    released, refunded = (
        int_or_none(paid.header(f"x-nooterra-{k}-amount-cents")) for k in ("released", "refunded")
    )
    if not status or released is None or refunded is None:
        raise Undetermined("the paid response lacks the settlement status or amounts; see x402.paid.settled")
    if status not in ("released", "refunded"):
        return [
            fails(
                "paid.amounts",
                "settlement_status_unexpected",
                f"settlement status {status!r} is neither released nor refunded",
                observed=status,
                expected=["released", "refunded"],
            )
        ]
    want_released, want_refunded, hold = x402.settlement_split(
        offer.amount, e.holdback_bps, released=status == "released"
    )
    out = [
        judge(
            "paid.sum",
            released + refunded == offer.amount,
            "amounts_do_not_sum",
            f"released {released} + refunded {refunded} != the offer's {offer.amount} cents",
            observed=released + refunded,
            expected=offer.amount,
            passed=f"released + refunded = {offer.amount}",
        ),
        judge(
            "paid.split",
            (released, refunded) == (want_released, want_refunded),
            "settlement_amounts_mismatch",
            f"{status}: released {released}, refunded {refunded}; with HOLDBACK_BPS {e.holdback_bps} the split of "
            f"{offer.amount} is {want_released} released, {want_refunded} refunded (holdback floor({offer.amount}*"
            f"{e.holdback_bps}/10000) = {hold})",
            observed={"released": released, "refunded": refunded},
            expected={"released": want_released, "refunded": want_refunded},
            passed=f"released {released}, refunded {refunded}",
        ),
    ]
    held, held_status = (
        int_or_none(paid.header("x-nooterra-holdback-amount-cents")),
        paid.header("x-nooterra-holdback-status"),
    )
    if hold:
        ok = held == hold and held_status in ("held", "released")
        out.append(
            judge(
                "paid.holdback",
                ok,
                "holdback_mismatch",
                f"the holdback headers say {held_status} {held}, expected held (or released) {hold}",
                observed={"status": held_status, "amountCents": held},
                expected={"status": "held", "amountCents": hold},
                passed=f"holdback {hold} {held_status}",
            )
        )
    elif held:
        out.append(
            fails(
                "paid.holdback",
                "holdback_mismatch",
                f"a holdback of {held} is reported where none is due",
                observed=held,
                expected=0,
            )
        )
    return out
