"""x402.offer.*: the 402 offer, its headers, its gate id, the provider's signed quote and the spend cap."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from conformance import x402
from conformance.paidcall.common import (
    Finding,
    at_seconds,
    canon,
    fails,
    first_call,
    judge,
    offer_402,
    offer_of,
    passes,
    provider_keys,
    raw_offer,
)
from conformance.paidcall.evidence import (
    PAID,
    PaidCallEvidence,
)


def offer_payment_required(e: PaidCallEvidence) -> list[Finding]:
    """The first call answers 402 with a parseable offer (either form), an amount, a provider and the payment error."""
    first = first_call(e)
    out = [
        judge(
            "offer.status",
            first.status == 402,
            "offer_status_not_402",
            f"the first call to {e.path} answered {first.status}, expected 402 Payment Required",
            observed=first.status,
            expected=402,
            passed="the first call answered 402",
        )
    ]
    raw = raw_offer(first)
    out.append(
        judge(
            "offer.header",
            raw is not None,
            "offer_header_missing",
            "the answer carries neither x-payment-required nor payment-required",
            observed=None,
            expected="x-payment-required: <offer>",
            passed="the answer carries the offer header",
        )
    )
    if raw is not None:
        try:
            fields = x402.parse_payment_required(raw)
        except x402.VerificationError as exc:
            out.append(
                fails(
                    "offer.parse",
                    exc.code if exc.code.isupper() else "offer_unparseable",
                    f"the offer {raw!r} cannot be parsed: {exc.message}",
                    raw,
                )
            )
        else:
            amount = x402.offer_amount(fields)
            out.append(
                judge(
                    "offer.amount",
                    amount is not None,
                    "offer_amount_missing",
                    f"the offer names no positive integer amount ({', '.join(x402.AMOUNT_KEYS)})",
                    observed=fields,
                    expected="amountCents=<positive integer>",
                    passed=f"the offer asks {amount} cents",
                )
            )
            provider = fields.get("providerId")
            out.append(
                judge(
                    "offer.provider",
                    isinstance(provider, str) and bool(provider),
                    "offer_provider_missing",
                    "the offer names no providerId",
                    observed=fields,
                    expected="providerId=<payee agent id>",
                    passed=f"the offer names provider {provider}",
                )
            )
    error = first.header("x-nooterra-payment-error")
    out.append(
        judge(
            "offer.payment_error",
            bool(error),
            "payment_error_header_missing",
            "the 402 carries no x-nooterra-payment-error",
            observed=error,
            expected="PAYMENT_REQUIRED",
            passed=f"x-nooterra-payment-error: {error}",
        )
    )
    return out


_COMPARED = ("currency", "providerId", "toolId", "address", "network", "requestBindingMode")


def _comparable(fields: Mapping[str, Any]) -> dict[str, str]:
    out = {"amount": canon(x402.offer_amount(fields))}
    out.update({k: canon(fields.get(k)) for k in _COMPARED if k in fields})
    return out


def offer_headers_agree(e: PaidCallEvidence) -> list[Finding]:
    """Both offer headers are present and carry the same offer, which the JSON body's offer repeats."""
    first = offer_402(e)
    legacy, standard = first.header("x-payment-required"), first.header("payment-required")
    out = [
        judge(
            "offer.both_headers",
            legacy is not None and standard is not None,
            "offer_header_single_form",
            "the 402 must carry the offer as both x-payment-required and PAYMENT-REQUIRED",
            observed={"x-payment-required": legacy, "payment-required": standard},
            expected="both headers, same offer",
            passed="both offer headers are present",
        )
    ]
    parsed: dict[str, dict[str, str]] = {}
    for name, raw in (("x-payment-required", legacy), ("payment-required", standard)):
        if raw is None:
            continue
        try:
            parsed[name] = _comparable(x402.parse_payment_required(raw))
        except x402.VerificationError as exc:
            out.append(
                fails(
                    f"offer.parse[{name}]",
                    "offer_unparseable",
                    f"{name} cannot be parsed: {exc.message}",
                    raw,
                )
            )
    if len(parsed) == 2:
        a, b = parsed["x-payment-required"], parsed["payment-required"]
        out.append(
            judge(
                "offer.headers_equal",
                a == b,
                "offer_headers_disagree",
                "x-payment-required and PAYMENT-REQUIRED carry different offers",
                observed=b,
                expected=a,
                passed="both headers carry the same offer",
            )
        )
    body = first.json()
    body_offer = body.get("offer") if isinstance(body, dict) else None
    if isinstance(body_offer, dict) and parsed:
        header = next(iter(parsed.values()))
        from_body = _comparable(body_offer)
        differ = {
            k: (from_body[k], header[k]) for k in from_body if k in header and from_body[k] != header[k]
        }
        out.append(
            judge(
                "offer.body",
                not differ,
                "offer_body_disagrees",
                f"the 402 body's offer differs from the header in {', '.join(sorted(differ))}",
                observed=from_body,
                expected=header,
                passed="the body's offer repeats the header",
            )
        )
    return out


def offer_gate_id(e: PaidCallEvidence) -> list[Finding]:
    """The gateway turned the offer into a hold: the 402 it relays carries x-nooterra-gate-id."""
    first = offer_402(e)
    gate = first.header("x-nooterra-gate-id")
    if not gate:
        return [
            fails(
                "offer.gate_id",
                "gate_id_missing",
                "the gateway relayed the 402 without x-nooterra-gate-id: no hold was created, nothing can be paid",
                observed=dict(first.headers),
                expected="x-nooterra-gate-id: x402gate_...",
            )
        ]
    well_formed = len(gate) <= 200 and gate.isprintable() and " " not in gate
    return [
        judge(
            "offer.gate_id",
            well_formed,
            "gate_id_invalid",
            f"x-nooterra-gate-id {gate!r} is not a usable id",
            observed=gate,
            expected="a printable id without spaces",
            passed=f"the hold is gate {gate}",
        )
    ]


def _quote_time(e: PaidCallEvidence) -> float:
    paid = e.exchange(PAID)
    return at_seconds(paid if paid is not None else first_call(e))


def offer_quote_valid(e: PaidCallEvidence) -> list[Finding]:
    """The 402 carries a provider quote signed by a published provider key, bound to the offer and not expired."""
    first = offer_402(e)
    offer = offer_of(e)
    quote_raw = first.header("x-nooterra-provider-quote")
    sig_raw = first.header("x-nooterra-provider-quote-signature")
    if not quote_raw or not sig_raw:
        return [
            fails(
                "quote.present",
                "quote_missing",
                "the 402 carries no signed provider quote "
                "(x-nooterra-provider-quote and x-nooterra-provider-quote-signature)",
                observed={"quote": quote_raw, "signature": sig_raw},
                expected="both headers",
            )
        ]
    try:
        quote = json.loads(x402.b64url_decode(quote_raw))
        signature = json.loads(x402.b64url_decode(sig_raw))
    except (x402.VerificationError, ValueError, UnicodeDecodeError) as exc:
        return [fails("quote.decode", "quote_invalid", f"the quote headers are not base64url JSON: {exc}")]
    if not isinstance(quote, dict) or not isinstance(signature, dict):
        return [fails("quote.decode", "quote_invalid", "the quote or its signature is not a JSON object")]
    keys = provider_keys(e)
    kid = str(signature.get("keyId", ""))
    out: list[Finding] = []
    if kid not in keys:
        out.append(
            fails(
                "quote.key",
                "quote_key_id_unknown",
                f"the quote is signed by key {kid!r}, which the provider keyset does not publish",
                observed=kid,
                expected=sorted(keys),
            )
        )
    else:
        try:
            x402.verify_quote_signature(quote, signature, keys[kid].pem)
            out.append(passes("quote.signature", f"the quote signature verifies under {kid}"))
        except x402.VerificationError as exc:
            out.append(
                fails("quote.signature", exc.code, f"the quote signature does not verify: {exc.message}", kid)
            )
    expected = {
        "providerId": offer.provider_id,
        "toolId": offer.tool_id,
        "amountCents": offer.amount,
        "currency": offer.currency,
        "requestBindingMode": offer.request_binding_mode,
    }
    observed = {k: quote.get(k) for k in expected}
    if offer.tool_id is None:
        expected.pop("toolId")
        observed.pop("toolId")
    differ = sorted(k for k in expected if observed[k] != expected[k])
    out.append(
        judge(
            "quote.binding",
            not differ,
            "quote_offer_mismatch",
            f"the quote disagrees with the offer in {', '.join(differ)}",
            observed=observed,
            expected=expected,
            passed="the quote names the offer's provider, tool, amount, currency and binding mode",
        )
    )
    quoted, expires = x402.parse_iso(quote.get("quotedAt")), x402.parse_iso(quote.get("expiresAt"))
    if quoted is None or expires is None:
        out.append(
            fails(
                "quote.window",
                "quote_invalid",
                "the quote's quotedAt/expiresAt are not an ISO 8601 window",
                observed={"quotedAt": quote.get("quotedAt"), "expiresAt": quote.get("expiresAt")},
            )
        )
    else:
        used = _quote_time(e)
        out.append(
            judge(
                "quote.window",
                expires.timestamp() > used,
                "quote_expired",
                f"the quote expired at {quote.get('expiresAt')}, before it was used",
                observed={"quotedAt": quote.get("quotedAt"), "expiresAt": quote.get("expiresAt")},
                expected="expiresAt after the paid retry",
                passed=f"the quote is valid until {quote.get('expiresAt')}",
            )
        )
    return out


def offer_within_spend_cap(e: PaidCallEvidence) -> list[Finding]:
    """The offer asks no more than the run allows to spend; above it, the suite refuses without paying."""
    offer = offer_of(e)
    ok = offer.amount <= e.spend_cap_cents
    return [
        judge(
            "offer.spend_cap",
            ok,
            "offer_above_spend_cap",
            f"the offer asks {offer.amount} {offer.currency} cents, above the {e.spend_cap_cents} this run allows "
            "(--allow-spend-cents): the suite refused to pay",
            observed=offer.amount,
            expected=f"<= {e.spend_cap_cents}",
            passed=f"the offer asks {offer.amount} cents, within the {e.spend_cap_cents} allowed",
        )
    ]
