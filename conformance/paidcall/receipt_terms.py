"""x402.receipt.{pay_token,amounts,headers_agree}: the NooterraPay token, the settled amounts and the
client's settlement headers agree with the offer and the receipt."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from conformance import x402
from conformance.errors import (
    Undetermined,
)
from conformance.paidcall.common import (
    Finding,
    api_keyset,
    at_seconds,
    canon,
    fails,
    judge,
    obj,
    offer_of,
    paid_2xx,
    passes,
    receipt_of,
)
from conformance.paidcall.evidence import (
    GATE,
    PaidCallEvidence,
)


def receipt_pay_token(e: PaidCallEvidence) -> list[Finding]:
    """The NooterraPay token verifies under the API's keyset, carries the offer, lived at most 300 s, and is the bound token."""
    receipt = receipt_of(e)
    offer = offer_of(e)
    paid = paid_2xx(e)
    token = e.token
    if token is None:
        raise Undetermined(f"the gate state of {e.gate_id} carries no NooterraPay token")
    keyset = api_keyset(e)
    used_at = at_seconds(paid)
    out: list[Finding] = []
    if e.token_value is not None:
        try:
            x402.verify_pay_token(e.token_value, keyset, now=used_at)
            out.append(passes("token.signature", f"verifies under the API keyset key {token.kid}"))
        except x402.VerificationError as exc:
            out.append(
                fails(
                    "token.signature",
                    exc.code,
                    f"the NooterraPay token does not verify under the API's keyset: {exc.message}",
                    observed=token.kid,
                )
            )
    elif token.verified:
        out.append(
            Finding(
                prop="token.signature",
                status="skip",
                message="verified under the API keyset when captured; not repeatable offline (the token is a "
                "payment credential and is not stored)",
            )
        )
    else:
        out.append(
            fails(
                "token.signature",
                token.code or "NOOTERRA_PAY_SIGNATURE_INVALID",
                f"when captured: {token.message}",
                observed=token.kid,
            )
        )
    try:
        published = x402.provider_keyset(keyset)
    except x402.VerificationError as exc:
        raise Undetermined(f"the API keyset is unusable: {exc}") from exc
    out.append(
        judge(
            "token.kid",
            token.kid in published,
            "NOOTERRA_PAY_UNKNOWN_KID",
            f"the token's kid {token.kid} is not in the API keyset",
            observed=token.kid,
            expected=sorted(published),
            passed=f"kid {token.kid} is published",
        )
    )
    p = token.payload
    claims = {
        "iss": p.get("iss"),
        "aud": p.get("aud"),
        "payeeProviderId": p.get("payeeProviderId"),
        "amountCents": p.get("amountCents"),
        "currency": p.get("currency"),
        "gateId": p.get("gateId"),
    }
    want = {
        "iss": "nooterra",
        "aud": offer.provider_id,
        "payeeProviderId": offer.provider_id,
        "amountCents": offer.amount,
        "currency": offer.currency,
        "gateId": e.gate_id,
    }
    differ = sorted(k for k in want if claims[k] != want[k])
    out.append(
        judge(
            "token.claims",
            not differ,
            "pay_token_claims_mismatch",
            f"the token's {', '.join(differ)} disagree with the offer and gate",
            observed=claims,
            expected=want,
            passed="the token pays the offer's provider the offer's amount for this gate",
        )
    )
    iat, exp = p.get("iat"), p.get("exp")
    if not (isinstance(iat, int) and isinstance(exp, int)):
        out.append(
            fails(
                "token.lifetime",
                "pay_token_claims_mismatch",
                "the token has no integer iat/exp",
                observed={"iat": iat, "exp": exp},
            )
        )
    else:
        out.append(
            judge(
                "token.lifetime",
                0 < exp - iat <= x402.PAY_TOKEN_TTL_S,
                "pay_token_ttl_exceeds_contract",
                f"the token lives {exp - iat} s, the contract allows {x402.PAY_TOKEN_TTL_S} s",
                observed=exp - iat,
                expected=f"<= {x402.PAY_TOKEN_TTL_S}",
                passed=f"lifetime {exp - iat} s",
            )
        )
        out.append(
            judge(
                "token.window",
                iat - 5 <= used_at <= exp,
                "NOOTERRA_PAY_EXPIRED",
                "the token was not valid when the call was paid",
                observed=int(used_at),
                expected={"iat": iat, "exp": exp},
                passed="valid when used",
            )
        )
    bound = {
        "receipt.bindings.token.sha256": obj(obj(receipt.get("bindings")).get("token")).get("sha256"),
        "x-nooterra-provider-token-sha256": paid.header("x-nooterra-provider-token-sha256"),
    }
    differ = sorted(k for k, v in bound.items() if v != token.sha256)
    out.append(
        judge(
            "token.binding",
            not differ,
            "pay_token_binding_mismatch",
            f"{', '.join(differ)} is not the sha256 of the gate's token",
            observed=bound,
            expected=token.sha256,
            passed="the receipt and the provider bind the token that paid",
        )
    )
    kid_bound = obj(obj(receipt.get("bindings")).get("token")).get("kid")
    out.append(
        judge(
            "token.kid_binding",
            kid_bound == token.kid,
            "pay_token_binding_mismatch",
            f"bindings.token.kid {kid_bound!r} is not the token's {token.kid}",
            observed=kid_bound,
            expected=token.kid,
        )
    )
    return out


def receipt_amounts(e: PaidCallEvidence) -> list[Finding]:
    """The receipt settles the offer amount, split as the declared holdback dictates; the gate holds back the same."""
    receipt = receipt_of(e)
    offer = offer_of(e)
    settlement = obj(receipt.get("settlementReceipt"))
    status = settlement.get("status")
    out = [
        judge(
            "receipt.amount",
            settlement.get("amountCents") == offer.amount and settlement.get("currency") == offer.currency,
            "receipt_amount_mismatch",
            f"the receipt settles {settlement.get('amountCents')} {settlement.get('currency')}, "
            f"the offer was {offer.amount} {offer.currency}",
            observed=[settlement.get("amountCents"), settlement.get("currency")],
            expected=[offer.amount, offer.currency],
            passed=f"{offer.amount} {offer.currency}",
        ),
    ]
    if status not in ("released", "refunded"):
        out.append(
            fails(
                "receipt.status",
                "settlement_status_unexpected",
                f"the receipt's status {status!r} is neither released nor refunded",
            )
        )
        return out
    want_rel, want_ref, hold = x402.settlement_split(
        offer.amount, e.holdback_bps, released=status == "released"
    )
    got = {
        "released": settlement.get("releasedAmountCents"),
        "refunded": settlement.get("refundedAmountCents"),
    }
    out.append(
        judge(
            "receipt.split",
            got == {"released": want_rel, "refunded": want_ref},
            "receipt_split_mismatch",
            f"{status}: the receipt releases {got['released']} and refunds {got['refunded']}; HOLDBACK_BPS "
            f"{e.holdback_bps} gives {want_rel} and {want_ref}",
            observed=got,
            expected={"released": want_rel, "refunded": want_ref},
            passed=f"released {want_rel}, refunded {want_ref}",
        )
    )
    gate = e.exchange(GATE)
    body = gate.json() if gate is not None and gate.status == 200 else None
    if isinstance(body, dict) and isinstance(body.get("gate"), dict):
        terms = obj(body["gate"].get("terms"))
        out.append(
            judge(
                "gate.terms",
                (terms.get("amountCents"), terms.get("holdbackBps")) == (offer.amount, e.holdback_bps),
                "gate_terms_mismatch",
                f"the gate's terms hold {terms.get('amountCents')} with holdbackBps {terms.get('holdbackBps')}, "
                f"expected {offer.amount} with the declared {e.holdback_bps}",
                observed=terms,
                expected={"amountCents": offer.amount, "holdbackBps": e.holdback_bps},
            )
        )
        if hold:
            holdback = obj(body["gate"].get("holdback"))
            settled = obj(body.get("holdbackSettlement"))
            got_hold = {
                "gate.holdback": holdback.get("amountCents"),
                "holdbackSettlement": settled.get("amountCents"),
            }
            out.append(
                judge(
                    "gate.holdback",
                    set(got_hold.values()) == {hold},
                    "holdback_mismatch",
                    f"the gate holds back {got_hold}, expected floor({offer.amount}*{e.holdback_bps}/10000) = {hold}",
                    observed=got_hold,
                    expected=hold,
                    passed=f"holdback {hold}",
                )
            )
    return out


_HEADER_FIELDS: tuple[tuple[str, Callable[[Mapping[str, Any]], Any]], ...] = (
    ("x-nooterra-settlement-status", lambda r: obj(r.get("settlementReceipt")).get("status")),
    (
        "x-nooterra-released-amount-cents",
        lambda r: obj(r.get("settlementReceipt")).get("releasedAmountCents"),
    ),
    (
        "x-nooterra-refunded-amount-cents",
        lambda r: obj(r.get("settlementReceipt")).get("refundedAmountCents"),
    ),
    ("x-nooterra-decision-id", lambda r: obj(r.get("decisionRecord")).get("decisionId")),
    ("x-nooterra-policy-hash", lambda r: obj(r.get("decisionRecord")).get("policyHashUsed")),
    ("x-nooterra-verification-status", lambda r: obj(r.get("decisionRecord")).get("verificationStatus")),
    ("x-nooterra-gate-id", lambda r: r.get("gateId")),
)


def receipt_headers_agree(e: PaidCallEvidence) -> list[Finding]:
    """Every settlement header the client received says what the receipt says (absent headers: x402.paid.settled)."""
    receipt = receipt_of(e)
    paid = paid_2xx(e)
    differ: dict[str, dict[str, Any]] = {}
    compared = []
    for name, read in _HEADER_FIELDS:
        header = paid.header(name)
        if header is None:
            continue
        compared.append(name)
        value = read(receipt)
        if header != canon(value):
            differ[name] = {"header": header, "receipt": value}
    return [
        judge(
            "receipt.headers",
            not differ,
            "settlement_header_contradicts_receipt",
            f"the client was told something the receipt contradicts: {', '.join(sorted(differ))}",
            observed=differ,
            expected="headers equal to the receipt",
            passed=f"{len(compared)} settlement headers agree",
        )
    ]
