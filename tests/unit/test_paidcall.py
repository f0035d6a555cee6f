"""The paid-call properties, the artifact bundle and `gates verify-receipt`, on a synthetic but real paid call.

`healthy()` builds the evidence of one conformant paid call with real Ed25519 keys and hashes (a provider
key, the API's NooterraPay signer), the way the x402 flow produces it: a 402 offer with a signed quote, a
paid 200 with provider signature and settlement headers, the gate state, one receipt and the replay audit.
Each test breaks one thing and expects exactly the check and failure code that names it.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conformance import paidcall, paidcall_bundle, x402
from conformance.canonical import canonical_bytes, canonical_hash, canonical_json, sha256_hex
from conformance.errors import ConfigError, ProbeUnreachable, SpendNotAllowed, Undetermined
from conformance.paidcall import Exchange, PaidCallEvidence, TokenFacts
from conformance.redact import Redactor
from gates.cli import run

ROOT = Path(__file__).resolve().parents[2]

GATE = "x402gate_0123456789abcdef01234567"
RUN = f"x402_{GATE}"
UPSTREAM = "http://127.0.0.1:9402"
PROVIDER = "agt_x402_payee_127_0_0_1:9402"
PATH = "/exa/search?q=gates&numResults=1"
T0 = 1_790_000_000  # the first call; everything else follows within seconds
OFFER = f"amountCents=500; currency=USD; providerId={PROVIDER}; toolId=exa.search; address=ref:payee; network=loopback; requestBindingMode=none"
PROVIDER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
API_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(64, 96)))


def pem(key: Ed25519PrivateKey) -> str:
    """SPKI PEM of a key's public half, without the trailing newline."""
    raw = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return raw.decode().strip()


def jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    """The published JWK of a key, under its own key id."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": x402.jwk_x_from_pem(pem(key)),
        "kid": x402.key_id_from_pem(pem(key)),
        "use": "sig",
        "alg": "EdDSA",
    }


def iso(at: float) -> str:
    """ISO 8601 UTC with milliseconds."""
    from conformance.probes.x402 import now_iso

    return now_iso(at)


def sign(key: Ed25519PrivateKey, digest: str) -> bytes:
    """Ed25519 over the raw bytes of a hex digest."""
    return key.sign(bytes.fromhex(digest))


def b64url_json(value: Any) -> str:
    """base64url of compact JSON (header encoding of quotes)."""
    return x402.b64url_encode(json.dumps(value, separators=(",", ":")).encode())


def ex(
    step: str,
    url: str,
    status: int,
    body: Any,
    *,
    at: float,
    headers: tuple[tuple[str, str], ...] = (),
    raw: bytes | None = None,
) -> Exchange:
    """A recorded exchange with a JSON body."""
    data = raw if raw is not None else json.dumps(body, separators=(",", ":")).encode()
    return Exchange(step=step, method="GET", url=url, at=iso(at), status=status,
                    headers=(("content-type", "application/json; charset=utf-8"), *headers), body=data)  # fmt: skip


def healthy(
    *, holdback_bps: int = 275, cap: int = 1000, provider_key: Ed25519PrivateKey = PROVIDER_KEY
) -> PaidCallEvidence:
    """The evidence of one conformant paid call of 500 cents with holdback ``holdback_bps``."""
    quote = {"schemaVersion": "ToolProviderQuotePayload.v1", "providerId": PROVIDER, "toolId": "exa.search", "amountCents": 500,
             "currency": "USD", "address": "ref:payee", "network": "loopback", "requestBindingMode": "none", "quoteRequired": False,
             "spendAuthorizationMode": "optional", "quoteId": "pquote_1", "quotedAt": iso(T0), "expiresAt": iso(T0 + 300)}  # fmt: skip
    quote_sig = {"schemaVersion": "ToolProviderQuoteSignature.v1", "algorithm": "ed25519", "keyId": x402.key_id_from_pem(pem(provider_key)),
                 "signedAt": iso(T0), "nonce": "ab" * 16, "payloadHash": canonical_hash(quote),
                 "signatureBase64": base64.b64encode(sign(provider_key, canonical_hash(quote))).decode()}  # fmt: skip
    first = ex("first-call", "http://127.0.0.1:8402" + PATH, 402,
               {"ok": False, "error": "payment_required", "code": "PAYMENT_REQUIRED",
                "offer": {"amountCents": 500, "currency": "USD", "providerId": PROVIDER, "toolId": "exa.search"}},
               at=T0, headers=(("x-payment-required", OFFER), ("payment-required", OFFER), ("x-nooterra-payment-error", "PAYMENT_REQUIRED"),
                               ("x-nooterra-provider-quote", b64url_json(quote)), ("x-nooterra-provider-quote-signature", b64url_json(quote_sig)),
                               ("x-nooterra-gate-id", GATE)))  # fmt: skip
    keyset = ex("provider-keyset", UPSTREAM + "/.well-known/nooterra-provider-keys.json", 200,
                {"schemaVersion": "ToolProviderKeyset.v1", "keys": [jwk(PROVIDER_KEY), *([jwk(provider_key)] if provider_key is not PROVIDER_KEY else [])]}, at=T0 + 1)  # fmt: skip
    api_keyset = ex(
        "api-keyset",
        "http://127.0.0.1:3000/.well-known/nooterra-keys.json",
        200,
        {"keys": [jwk(API_KEY)]},
        at=T0 + 1,
    )
    payload = {"iss": "nooterra", "aud": PROVIDER, "gateId": GATE, "authorizationRef": f"auth_{GATE}", "amountCents": 500,
               "currency": "USD", "payeeProviderId": PROVIDER, "iat": T0 + 1, "exp": T0 + 301}  # fmt: skip
    kid = x402.key_id_from_pem(pem(API_KEY))
    envelope = {
        "v": 1,
        "kid": kid,
        "payload": payload,
        "sig": x402.b64url_encode(sign(API_KEY, canonical_hash(payload))),
    }
    token = x402.b64url_encode(canonical_json(envelope).encode())
    token_sha = sha256_hex(token.encode())
    body = canonical_bytes({"ok": True, "provider": "exa-ref", "query": "gates", "numResults": 1})
    response = sha256_hex(body)
    signed_at, nonce = iso(T0 + 2), "cd" * 16
    payload_hash = x402.provider_payload_hash(response, nonce, signed_at)
    provider_sig = {"schemaVersion": "ToolProviderSignature.v1", "algorithm": "ed25519", "keyId": x402.key_id_from_pem(pem(provider_key)),
                    "signedAt": signed_at, "nonce": nonce, "responseHash": response, "payloadHash": payload_hash,
                    "signatureBase64": base64.b64encode(sign(provider_key, payload_hash)).decode()}  # fmt: skip
    held = x402.holdback_cents(500, holdback_bps)
    request = x402.request_binding_sha256("GET", "127.0.0.1:9402", PATH)
    x = x402.jwk_x_from_pem(pem(provider_key))
    key_evidence = {"schemaVersion": "VerificationKeyEvidence.v1", "keyId": provider_sig["keyId"], "publicKeyPem": pem(provider_key),
                    "jwk": {"crv": "Ed25519", "kty": "OKP", "x": x}, "jwkThumbprintSha256": x402.jwk_thumbprint(x)}  # fmt: skip
    bindings = {"token": {"kid": kid, "sha256": token_sha, "expiresAt": iso(T0 + 301)}, "request": {"sha256": request},
                "response": {"status": 200, "sha256": response},
                "providerSig": {"required": True, "present": True, "verified": True, "providerKeyId": provider_sig["keyId"],
                                "keyJwkThumbprintSha256": key_evidence["jwkThumbprintSha256"], "error": None},
                "providerQuoteSig": {"required": True, "present": True, "verified": True, "providerKeyId": quote_sig["keyId"],
                                     "quoteId": "pquote_1", "quoteSha256": quote_sig["payloadHash"], "error": None,
                                     "keyJwkThumbprintSha256": key_evidence["jwkThumbprintSha256"]}}  # fmt: skip
    decision = {"schemaVersion": "SettlementDecisionRecord.v2", "decisionId": "dec_setl_1", "tenantId": "tenant_default", "runId": RUN,
                "settlementId": f"setl_{RUN}", "verificationStatus": "green", "policyHashUsed": "a" * 64, "bindings": bindings,
                "decidedAt": iso(T0 + 3)}  # fmt: skip
    decision["decisionHash"] = x402.decision_hash(decision)
    settlement = {"schemaVersion": "SettlementReceipt.v1", "receiptId": "rcpt_setl_1", "tenantId": "tenant_default", "runId": RUN,
                  "settlementId": f"setl_{RUN}", "decisionRef": {"decisionId": "dec_setl_1", "decisionHash": decision["decisionHash"]},
                  "status": "released", "amountCents": 500, "releasedAmountCents": 500 - held, "refundedAmountCents": held,
                  "releaseRatePct": 100, "currency": "USD", "settledAt": iso(T0 + 3), "bindings": bindings, "createdAt": iso(T0 + 3)}  # fmt: skip
    settlement["receiptHash"] = x402.receipt_hash(settlement)
    evidence_refs = [f"http:request_sha256:{request}", f"http:response_sha256:{response}", "http:status:200",
                     f"provider:key_id:{provider_sig['keyId']}", f"provider:signed_at:{signed_at}", f"provider:nonce:{nonce}",
                     f"provider:payload_sha256:{payload_hash}", f"provider:sig_b64:{provider_sig['signatureBase64']}",
                     f"provider_quote:payload_sha256:{quote_sig['payloadHash']}", "provider_quote:quote_id:pquote_1"]  # fmt: skip
    receipt = {"schemaVersion": "X402ReceiptRecord.v1", "tenantId": "tenant_default", "receiptId": "rcpt_setl_1", "gateId": GATE, "runId": RUN,
               "payerAgentId": "agt_x402_payer_ak", "providerId": PROVIDER, "toolId": "exa.search", "settlementState": "released",
               "verificationStatus": "green", "evidenceRefs": evidence_refs,
               "verificationContext": {"schemaVersion": "X402GateVerificationContext.v1", "providerSigningKey": key_evidence,
                                       "providerQuoteSigningKey": key_evidence},
               "bindings": bindings, "providerSignature": provider_sig,
               "providerQuotePayload": quote, "providerQuoteSignature": {**quote_sig, "quoteId": "pquote_1"}, "decisionRecord": decision, "settlementReceipt": settlement}  # fmt: skip
    settlement_headers = (
        ("x-nooterra-gate-id", GATE), ("x-nooterra-response-sha256", response), ("x-nooterra-settlement-status", "released"),
        ("x-nooterra-released-amount-cents", str(500 - held)), ("x-nooterra-refunded-amount-cents", str(held)),
        ("x-nooterra-verification-status", "green"), ("x-nooterra-policy-decision", "allow"), ("x-nooterra-reason-code", "POLICY_ALLOW"),
        ("x-nooterra-decision-id", "dec_setl_1"), ("x-nooterra-policy-hash", "a" * 64),
        *((("x-nooterra-holdback-status", "held"), ("x-nooterra-holdback-amount-cents", str(held))) if held else ()),
        ("x-nooterra-provider-key-id", provider_sig["keyId"]), ("x-nooterra-provider-signed-at", signed_at), ("x-nooterra-provider-nonce", nonce),
        ("x-nooterra-provider-response-sha256", response), ("x-nooterra-provider-signature", provider_sig["signatureBase64"]),
        ("x-nooterra-provider-token-sha256", token_sha),
    )  # fmt: skip
    paid = ex(
        "paid-call",
        "http://127.0.0.1:8402" + PATH,
        200,
        None,
        at=T0 + 2,
        headers=settlement_headers,
        raw=body,
    )
    gate_body = {"ok": True, "gate": {"gateId": GATE, "runId": RUN, "payerAgentId": "agt_x402_payer_ak",
                                      "terms": {"amountCents": 500, "currency": "USD", "holdbackBps": holdback_bps},
                                      "holdback": {"amountCents": held} if held else None,
                                      "authorization": {"authorizationRef": f"auth_{GATE}", "token": {"value": "<redacted>", "kid": kid, "sha256": token_sha}}},
                 "settlement": {"settlementId": f"setl_{RUN}", "status": "released", "amountCents": 500},
                 "holdbackSettlement": {"amountCents": held} if held else None}  # fmt: skip
    api = "http://127.0.0.1:3000"
    exchanges = (
        first, keyset, api_keyset, paid,
        ex("gate", f"{api}/x402/gate/{GATE}", 200, gate_body, at=T0 + 4),
        ex("receipts", f"{api}/x402/receipts?runId={RUN}", 200, {"receipts": [receipt]}, at=T0 + 4),
        ex("replay", "http://127.0.0.1:8402" + PATH, 200, None, at=T0 + 5, headers=settlement_headers, raw=body),
        ex("gate-after-replay", f"{api}/x402/gate/{GATE}", 200, gate_body, at=T0 + 5),
        ex("receipts-after-replay", f"{api}/x402/receipts?runId={RUN}", 200, {"receipts": [receipt]}, at=T0 + 5),
        ex("receipt-by-id", f"{api}/x402/receipts/rcpt_setl_1", 200, {"ok": True, "receipt": receipt}, at=T0 + 6),
    )  # fmt: skip
    facts = TokenFacts(
        kid=kid,
        payload=payload,
        sha256=token_sha,
        canonical=True,
        verified=True,
        code=None,
        message="verified",
    )
    return PaidCallEvidence(
        name="exa-search", gateway_url="http://127.0.0.1:8402", path=PATH, api_url=api, upstream_url=UPSTREAM,
        provider_keyset_url=UPSTREAM + "/.well-known/nooterra-provider-keys.json", pinned_key_ids=(x402.key_id_from_pem(pem(PROVIDER_KEY)),),
        holdback_bps=holdback_bps, spend_cap_cents=cap, tenant="tenant_default", started_at=iso(T0), gate_id=GATE, exchanges=exchanges,
        token=facts, token_value=token,
    )  # fmt: skip


# --- editing evidence -------------------------------------------------------------------------


def replace_exchange(e: PaidCallEvidence, step: str, **changes: Any) -> PaidCallEvidence:
    """The evidence with one exchange changed."""
    return dataclasses.replace(
        e, exchanges=tuple(dataclasses.replace(x, **changes) if x.step == step else x for x in e.exchanges)
    )


def with_headers(e: PaidCallEvidence, step: str, edit: Callable[[dict[str, str]], None]) -> PaidCallEvidence:
    """The evidence with one exchange's response headers edited (as a dict)."""
    x = e.exchange(step)
    assert x is not None
    headers = dict(x.headers)
    edit(headers)
    return replace_exchange(e, step, headers=tuple(headers.items()))


def with_receipt(
    e: PaidCallEvidence,
    edit: Callable[[dict[str, Any]], None],
    *,
    steps: tuple[str, ...] = ("receipts", "receipts-after-replay", "receipt-by-id"),
) -> PaidCallEvidence:
    """The evidence with the receipt edited wherever the listed exchanges serve it."""
    for step in steps:
        x = e.exchange(step)
        assert x is not None
        body = x.json()
        for r in body["receipts"] if "receipts" in body else [body["receipt"]]:
            edit(r)
        e = replace_exchange(e, step, body=json.dumps(body).encode())
    return e


def failing(e: PaidCallEvidence) -> dict[str, set[str]]:
    """check id → failure codes of every check that does not hold (undecidable checks as 'undetermined')."""
    out: dict[str, set[str]] = {}
    for check_id in paidcall.PROPERTIES:
        try:
            codes = {f.code or "" for f in paidcall.evaluate(check_id, e) if f.status == "fail"}
        except (Undetermined, SpendNotAllowed) as exc:
            codes = {exc.reason_code}
        if codes:
            out[check_id] = codes
    return out


def rehash(r: dict[str, Any]) -> None:
    """Re-seal the decision and the receipt after an edit (an operator covering its tracks)."""
    r["decisionRecord"]["decisionHash"] = x402.decision_hash(r["decisionRecord"])
    r["settlementReceipt"]["decisionRef"]["decisionHash"] = r["decisionRecord"]["decisionHash"]
    r["settlementReceipt"]["receiptHash"] = x402.receipt_hash(r["settlementReceipt"])


# --- the properties ---------------------------------------------------------------------------


class TestHealthy:
    """A conformant paid call satisfies every property, with and without a holdback."""

    @pytest.mark.parametrize("bps", [275, 0])
    def test_every_property_holds(self, bps: int) -> None:
        """No check fails on the healthy evidence."""
        assert failing(healthy(holdback_bps=bps)) == {}

    def test_offline_token_signature_is_reported_not_repeated(self) -> None:
        """Without the token (it is never stored) its signature is a skip naming why, not a pass and not a failure."""
        e = dataclasses.replace(healthy(), token_value=None)
        findings = paidcall.evaluate("x402.receipt.pay_token", e)
        (sig,) = [f for f in findings if f.prop == "token.signature"]
        assert sig.status == "skip"
        assert "payment credential" in sig.message
        assert failing(e) == {}


def _del(name: str) -> Callable[[dict[str, str]], None]:
    return lambda h: h.pop(name)


def _set(name: str, value: str) -> Callable[[dict[str, str]], None]:
    return lambda h: h.__setitem__(name, value)


class TestOffer:
    """The first call and its offer."""

    def test_free_route(self) -> None:
        """A route that answers 200 unpaid fails payment_required and leaves every later property undecidable."""
        e = replace_exchange(
            healthy(), "first-call", status=200, headers=(("content-type", "application/json"),)
        )
        found = failing(dataclasses.replace(e, refused={"code": "no_offer", "message": "200"}))
        assert found["x402.offer.payment_required"] == {
            "offer_status_not_402",
            "offer_header_missing",
            "payment_error_header_missing",
        }
        assert set(found) == set(paidcall.PROPERTIES)
        assert found["x402.replay.settles_once"] == {"undetermined"}

    def test_json_form_offer_is_accepted(self) -> None:
        """An offer in the JSON form parses like the k=v form."""
        offer = json.dumps({"amountCents": 500, "currency": "USD", "providerId": PROVIDER, "toolId": "exa.search", "address": "ref:payee",
                            "network": "loopback", "requestBindingMode": "none"})  # fmt: skip
        e = with_headers(
            healthy(),
            "first-call",
            lambda h: h.update({"x-payment-required": offer, "payment-required": offer}),
        )
        assert failing(e) == {}

    def test_forms_mixed_still_agree(self) -> None:
        """One header in JSON form and the other as pairs carry the same offer."""
        offer = json.dumps({"amountCents": "500", "currency": "USD", "providerId": PROVIDER, "toolId": "exa.search", "address": "ref:payee",
                            "network": "loopback", "requestBindingMode": "none"})  # fmt: skip
        assert "x402.offer.headers_agree" not in failing(
            with_headers(healthy(), "first-call", _set("payment-required", offer))
        )

    @pytest.mark.parametrize(
        ("edit", "code"),
        [
            (_del("payment-required"), "offer_header_single_form"),
            (_set("payment-required", OFFER.replace("500", "400")), "offer_headers_disagree"),
            (_set("payment-required", "amountCents=5; amountCents=6"), "offer_unparseable"),
        ],
        ids=["single-form", "disagree", "ambiguous"],
    )
    def test_headers_agree(self, edit: Callable[[dict[str, str]], None], code: str) -> None:
        """Each way the two offer headers can differ is its own code, and trips only headers_agree."""
        found = failing(with_headers(healthy(), "first-call", edit))
        assert found == {"x402.offer.headers_agree": {code}}

    def test_body_offer_disagrees(self) -> None:
        """The 402 body's offer must repeat the header's."""
        x = healthy().exchange("first-call")
        assert x is not None
        body = x.json()
        body["offer"]["amountCents"] = 499
        assert failing(replace_exchange(healthy(), "first-call", body=json.dumps(body).encode())) == {
            "x402.offer.headers_agree": {"offer_body_disagrees"}
        }

    def test_amount_missing(self) -> None:
        """An offer without a positive amount fails payment_required."""
        bad = OFFER.replace("amountCents=500", "amountCents=0")
        e = with_headers(
            healthy(), "first-call", lambda h: h.update({"x-payment-required": bad, "payment-required": bad})
        )
        assert failing(e)["x402.offer.payment_required"] == {"offer_amount_missing"}

    def test_gate_id_missing(self) -> None:
        """No gate id: gate_id fails and nothing can be paid."""
        found = failing(
            dataclasses.replace(
                with_headers(healthy(), "first-call", _del("x-nooterra-gate-id")),
                refused={"code": "no_gate", "message": "none"},
            )
        )
        assert found["x402.offer.gate_id"] == {"gate_id_missing"}
        assert "x402.offer.quote_valid" not in found

    def test_spend_cap(self) -> None:
        """An offer above the allowance fails within_spend_cap; the rest is undecidable because the suite did not pay."""
        e = dataclasses.replace(
            healthy(cap=499), refused={"code": "offer_above_spend_cap", "message": "500 > 499"}
        )
        found = failing(e)
        assert found["x402.offer.within_spend_cap"] == {"offer_above_spend_cap"}
        assert all(codes == {"undetermined"} for c, codes in found.items() if c.split(".")[1] != "offer")


class TestQuote:
    """The provider's signed quote."""

    def quote_edit(self, change: dict[str, Any], *, resign: bool = True) -> PaidCallEvidence:
        e = healthy()
        x = e.exchange("first-call")
        assert x is not None
        quote = {**json.loads(x402.b64url_decode(x.header("x-nooterra-provider-quote") or "")), **change}
        sig = json.loads(x402.b64url_decode(x.header("x-nooterra-provider-quote-signature") or ""))
        if resign:
            sig["payloadHash"] = canonical_hash(quote)
            sig["signatureBase64"] = base64.b64encode(sign(PROVIDER_KEY, sig["payloadHash"])).decode()
        return with_headers(
            e,
            "first-call",
            lambda h: h.update(
                {
                    "x-nooterra-provider-quote": b64url_json(quote),
                    "x-nooterra-provider-quote-signature": b64url_json(sig),
                }
            ),
        )

    @pytest.mark.parametrize(
        ("change", "resign", "code"),
        [
            ({"expiresAt": iso(T0 - 1)}, True, "quote_expired"),
            ({"amountCents": 450}, True, "quote_offer_mismatch"),
            ({"amountCents": 450}, False, "quote_signature_payload_hash_mismatch"),
        ],
        ids=["expired", "amount", "edited-after-signing"],
    )
    def test_quote_defects(self, change: dict[str, Any], resign: bool, code: str) -> None:
        """Expired, mismatched or tampered quotes fail quote_valid with their code (first)."""
        found = failing(self.quote_edit(change, resign=resign))
        assert set(found) == {"x402.offer.quote_valid"}
        assert code in found["x402.offer.quote_valid"]
        first = next(
            f
            for f in paidcall.evaluate("x402.offer.quote_valid", self.quote_edit(change, resign=resign))
            if f.status == "fail"
        )
        assert first.code == code

    def test_missing_quote(self) -> None:
        """A 402 without a signed quote fails quote_valid."""
        assert failing(with_headers(healthy(), "first-call", _del("x-nooterra-provider-quote")))[
            "x402.offer.quote_valid"
        ] == {"quote_missing"}


class TestPaid:
    """The paid retry's answer."""

    @pytest.mark.parametrize(
        ("edit", "expected"),
        [
            (_del("x-nooterra-policy-hash"), {"x402.paid.settled": {"settlement_metadata_missing"}}),
            (
                _set("x-nooterra-policy-decision", "maybe"),
                {
                    "x402.paid.settled": {"policy_decision_invalid"},
                    "x402.paid.released": {"payment_not_released"},
                },
            ),
            (
                _set("x-nooterra-response-sha256", "0" * 64),
                {"x402.paid.response_sha256": {"response_sha256_mismatch"}},
            ),
            (
                _set("x-nooterra-decision-id", "setl_x"),
                {
                    "x402.receipt.headers_agree": {"settlement_header_contradicts_receipt"},
                    "x402.replay.settles_once": {"replay_new_decision"},
                },
            ),
        ],
        ids=["policy-hash-missing", "policy-decision", "response-sha256", "decision-id"],
    )
    def test_header_defects(
        self, edit: Callable[[dict[str, str]], None], expected: dict[str, set[str]]
    ) -> None:
        """Each header defect of the paid answer trips its check."""
        assert failing(with_headers(healthy(), "paid-call", edit)) == expected

    def test_red_is_not_released_but_amounts_are_consistent(self) -> None:
        """A refunded call fails released; its refund of the whole amount is arithmetically right."""

        def red(h: dict[str, str]) -> None:
            h.update({"x-nooterra-settlement-status": "refunded", "x-nooterra-verification-status": "red", "x-nooterra-policy-decision": "deny",
                      "x-nooterra-released-amount-cents": "0", "x-nooterra-refunded-amount-cents": "500"})  # fmt: skip
            h.pop("x-nooterra-holdback-status")
            h.pop("x-nooterra-holdback-amount-cents")

        found = failing(with_headers(healthy(), "paid-call", red))
        assert found["x402.paid.released"] == {"payment_not_released"}
        assert "x402.paid.amounts" not in found

    def test_holdback_rounded(self) -> None:
        """A holdback rounded instead of floored breaks the split."""

        def rounded(h: dict[str, str]) -> None:
            h.update(
                {
                    "x-nooterra-released-amount-cents": "486",
                    "x-nooterra-refunded-amount-cents": "14",
                    "x-nooterra-holdback-amount-cents": "14",
                }
            )

        found = failing(with_headers(healthy(), "paid-call", rounded))
        assert found["x402.paid.amounts"] == {"settlement_amounts_mismatch", "holdback_mismatch"}

    def test_signature_headers_missing(self) -> None:
        """Without the signature header the provider vouches for nothing."""
        assert failing(with_headers(healthy(), "paid-call", _del("x-nooterra-provider-signature")))[
            "x402.paid.provider_signature"
        ] == {"provider_signature_headers_missing"}

    def test_signature_by_another_key_under_the_published_id(self) -> None:
        """A signature made with another key under the published key id does not verify."""

        def forge(h: dict[str, str]) -> None:
            payload = x402.provider_payload_hash(
                h["x-nooterra-provider-response-sha256"],
                h["x-nooterra-provider-nonce"],
                h["x-nooterra-provider-signed-at"],
            )
            h["x-nooterra-provider-signature"] = base64.b64encode(sign(OTHER_KEY, payload)).decode()

        assert failing(with_headers(healthy(), "paid-call", forge))["x402.paid.provider_signature"] == {
            "provider_signature_crypto_invalid"
        }

    def test_unknown_key_id(self) -> None:
        """A key id the keyset does not publish is unknown and not pinned."""
        found = failing(
            with_headers(healthy(), "paid-call", _set("x-nooterra-provider-key-id", "key_" + "0" * 24))
        )
        assert found["x402.paid.provider_signature"] == {"provider_key_id_unknown"}
        assert found["x402.paid.provider_key_pinned"] == {"provider_key_not_pinned"}

    def test_rotated_key_not_pinned(self) -> None:
        """A published but unpinned key verifies as published and fails only the pinning checks."""
        found = failing(healthy(provider_key=OTHER_KEY))
        assert found == {
            "x402.paid.provider_key_pinned": {"provider_key_not_pinned"},
            "x402.receipt.provider_signature": {
                "provider_signature_key_not_pinned",
                "embedded_key_not_pinned",
            },
            "x402.receipt.quote_signature": {"provider_quote_key_not_pinned"},
        }

    def test_rotated_key_pinned(self) -> None:
        """Pinning the new key id as well makes the rotation conform."""
        e = healthy(provider_key=OTHER_KEY)
        e = dataclasses.replace(e, pinned_key_ids=(*e.pinned_key_ids, x402.key_id_from_pem(pem(OTHER_KEY))))
        assert failing(e) == {}

    def test_keyset_lying_about_a_kid(self) -> None:
        """Key material published under a pinned kid that is not its own fingerprint is refused."""
        kid = x402.key_id_from_pem(pem(PROVIDER_KEY))
        lie = {"schemaVersion": "ToolProviderKeyset.v1", "keys": [{**jwk(OTHER_KEY), "kid": kid}]}
        found = failing(replace_exchange(healthy(), "provider-keyset", body=json.dumps(lie).encode()))
        assert found["x402.paid.provider_key_pinned"] == {"pinned_key_material_mismatch"}

    def test_unreachable_gateway_is_an_error_not_a_failure(self) -> None:
        """A paid retry that got no answer makes the checks error with the probe's reason, never pass."""
        e = replace_exchange(
            healthy(),
            "paid-call",
            status=None,
            headers=(),
            body=b"",
            error_code="probe_unreachable",
            error="refused",
        )
        with pytest.raises(ProbeUnreachable):
            paidcall.evaluate("x402.paid.settled", e)


class TestReceipt:
    """The receipt, verified without trusting the operator."""

    def test_missing_receipt(self) -> None:
        """No receipt for the run: present fails, the other receipt checks are undecidable."""
        e = with_receipt(healthy(), lambda r: None)
        e = replace_exchange(e, "receipts", body=b'{"receipts":[]}')
        found = failing(e)
        assert found["x402.receipt.present"] == {"receipt_missing"}
        assert found["x402.receipt.kernel_hashes"] == {"undetermined"}

    @pytest.mark.parametrize(
        ("edit", "expected"),
        [
            (
                lambda r: r["settlementReceipt"].update(releasedAmountCents=500),
                {
                    "x402.receipt.kernel_hashes": {"settlement_receipt_hash_mismatch"},
                    "x402.receipt.amounts": {"receipt_split_mismatch"},
                    "x402.receipt.headers_agree": {"settlement_header_contradicts_receipt"},
                },
            ),
            (
                lambda r: r["settlementReceipt"].update(
                    receiptHash=x402.receipt_hash(
                        {k: v for k, v in r["settlementReceipt"].items() if k != "bindings"}
                    )
                ),
                {"x402.receipt.kernel_hashes": {"settlement_receipt_hash_mismatch"}},
            ),
            (
                lambda r: (
                    r["decisionRecord"].update(decisionReason="amended"),
                    r["decisionRecord"].update(decisionHash=x402.decision_hash(r["decisionRecord"])),
                ),
                {"x402.receipt.kernel_invariants": {"settlement_receipt_decision_hash_mismatch"}},
            ),
            (lambda r: r.update(receiptId="rcpt_other"), {"x402.receipt.identity": {"receipt_id_mismatch"}}),
            (
                lambda r: r["verificationContext"]["providerSigningKey"].update(jwkThumbprintSha256="x"),
                {
                    "x402.receipt.key_evidence": {
                        "key_evidence_thumbprint_mismatch",
                        "provider_sig_thumbprint_binding_mismatch",
                    }
                },
            ),
            (
                lambda r: r["bindings"]["token"].update(sha256="0" * 64),
                {"x402.receipt.pay_token": {"pay_token_binding_mismatch"}},
            ),
        ],
        ids=[
            "content-after-hash",
            "hash-before-bindings",
            "decision-amended",
            "receipt-id",
            "thumbprint",
            "token-binding",
        ],
    )
    def test_receipt_defects(
        self, edit: Callable[[dict[str, Any]], Any], expected: dict[str, set[str]]
    ) -> None:
        """Each receipt defect trips exactly its checks, with its code."""
        assert failing(with_receipt(healthy(), edit)) == expected

    def test_request_binding_over_another_host(self) -> None:
        """A request hash over a host the suite did not call binds a request nobody sent."""

        def own_host(r: dict[str, Any]) -> None:
            other = x402.request_binding_sha256("GET", "127.0.0.1:8402", PATH)
            r["evidenceRefs"][0] = f"http:request_sha256:{other}"
            r["bindings"]["request"]["sha256"] = other

        assert failing(with_receipt(healthy(), own_host)) == {
            "x402.receipt.http_bindings": {"request_hash_binding_mismatch"}
        }

    def test_re_sealed_tampering_is_still_caught(self) -> None:
        """Raising the payout and re-sealing every hash still fails: the split, the headers and the token do not follow."""

        def tamper(r: dict[str, Any]) -> None:
            r["settlementReceipt"].update(releasedAmountCents=500, refundedAmountCents=0)
            rehash(r)

        found = failing(with_receipt(healthy(), tamper))
        assert "x402.receipt.kernel_hashes" not in found
        assert found["x402.receipt.amounts"] == {"receipt_split_mismatch"}
        assert found["x402.receipt.headers_agree"] == {"settlement_header_contradicts_receipt"}

    def test_swapped_embedded_key_does_not_help(self) -> None:
        """A receipt re-signed by another key, embedding that key, still fails under the pinned key."""

        def swap(r: dict[str, Any]) -> None:
            sig = r["providerSignature"]
            sig["keyId"] = x402.key_id_from_pem(pem(OTHER_KEY))
            sig["signatureBase64"] = base64.b64encode(sign(OTHER_KEY, sig["payloadHash"])).decode()
            x = x402.jwk_x_from_pem(pem(OTHER_KEY))
            r["verificationContext"]["providerSigningKey"] = {"schemaVersion": "VerificationKeyEvidence.v1", "keyId": sig["keyId"],
                                                              "publicKeyPem": pem(OTHER_KEY), "jwk": {"crv": "Ed25519", "kty": "OKP", "x": x},
                                                              "jwkThumbprintSha256": x402.jwk_thumbprint(x)}  # fmt: skip
            r["bindings"]["providerSig"].update(
                providerKeyId=sig["keyId"], keyJwkThumbprintSha256=x402.jwk_thumbprint(x)
            )

        found = failing(with_receipt(healthy(), swap))
        assert found["x402.receipt.provider_signature"] == {
            "provider_signature_key_not_pinned",
            "embedded_key_not_pinned",
        }

    def test_token_signed_by_an_unpublished_key(self) -> None:
        """A token the API keyset cannot vouch for fails pay_token live (unknown kid)."""
        e = healthy()
        payload = e.token.payload if e.token else {}
        envelope = {
            "v": 1,
            "kid": x402.key_id_from_pem(pem(OTHER_KEY)),
            "payload": payload,
            "sig": x402.b64url_encode(sign(OTHER_KEY, canonical_hash(payload))),
        }
        e = dataclasses.replace(e, token_value=x402.b64url_encode(canonical_json(envelope).encode()))
        assert "NOOTERRA_PAY_UNKNOWN_KID" in failing(e)["x402.receipt.pay_token"]

    def test_token_ttl(self) -> None:
        """A token that lives longer than 300 s breaks the contract."""
        e = healthy()
        assert e.token is not None
        e = dataclasses.replace(
            e,
            token=dataclasses.replace(e.token, payload={**e.token.payload, "exp": T0 + 86_401}),
            token_value=None,
        )
        assert failing(e) == {"x402.receipt.pay_token": {"pay_token_ttl_exceeds_contract"}}


def _quote_sig(edit: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    return lambda r: edit(r["providerQuoteSignature"])


def _resealed_quote(change: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """The quote payload changed and re-signed by the provider, hash and id bindings left as they were."""

    def edit(r: dict[str, Any]) -> None:
        r["providerQuotePayload"].update(change)
        digest = canonical_hash(r["providerQuotePayload"])
        r["providerQuoteSignature"]["payloadHash"] = digest
        r["providerQuoteSignature"]["signatureBase64"] = base64.b64encode(sign(PROVIDER_KEY, digest)).decode()

    return edit


def _evidence(prefix: str, value: str) -> Callable[[dict[str, Any]], None]:
    def edit(r: dict[str, Any]) -> None:
        r["evidenceRefs"] = [x for x in r["evidenceRefs"] if not x.startswith(prefix)] + [prefix + value]

    return edit


class TestQuoteSignature:
    """x402.receipt.quote_signature reports, by name, every error upstream's receipt verifier gives a quote
    signature (src/core/x402-receipt-verifier.js:357-447), and nothing else fails with it."""

    @pytest.mark.parametrize(
        ("edit", "codes"),
        [
            # upstream's gateway drops the algorithm (services/x402-gateway/src/server.js:378-385, :952)
            (_quote_sig(lambda s: s.__setitem__("algorithm", "")),
             {"provider_quote_signature_parse_failed", "provider_quote_signature_crypto_invalid"}),
            (_quote_sig(lambda s: s.__setitem__("schemaVersion", "ToolProviderQuoteSignature.v0")),
             {"provider_quote_signature_parse_failed", "provider_quote_signature_crypto_invalid"}),
            (_quote_sig(lambda s: s.__setitem__("payloadHash", "not-hex")),
             {"provider_quote_signature_parse_failed", "provider_quote_signature_crypto_invalid"}),
            (lambda r: r["providerQuotePayload"].__setitem__("currency", "US"),
             {"provider_quote_signature_parse_failed", "provider_quote_signature_crypto_invalid"}),
            (_quote_sig(lambda s: s.__setitem__("signatureBase64", base64.b64encode(b"x" * 64).decode())),
             {"provider_quote_signature_crypto_invalid"}),
            (lambda r: r["providerQuotePayload"].__setitem__("amountCents", 450),
             {"provider_quote_signature_crypto_invalid", "provider_quote_signature_hash_mismatch",
              "provider_quote_evidence_hash_mismatch"}),
            (lambda r: r["bindings"]["providerQuoteSig"].__setitem__("quoteSha256", "b" * 64),
             {"provider_quote_signature_hash_mismatch"}),
            (_evidence("provider_quote:payload_sha256:", "c" * 64), {"provider_quote_evidence_hash_mismatch"}),
            (lambda r: r["bindings"]["providerQuoteSig"].__setitem__("quoteId", "pquote_2"),
             {"provider_quote_id_mismatch"}),
            (_evidence("provider_quote:quote_id:", "pquote_3"), {"provider_quote_evidence_id_mismatch"}),
            (_resealed_quote({"quoteId": "pquote_4"}),
             {"provider_quote_signature_hash_mismatch", "provider_quote_evidence_hash_mismatch",
              "provider_quote_id_mismatch", "provider_quote_evidence_id_mismatch"}),
            (lambda r: r.pop("providerQuotePayload"), {"provider_quote_signature_material_missing"}),
        ],
    )  # fmt: skip
    def test_upstream_codes_are_named(self, edit: Callable[[dict[str, Any]], None], codes: set[str]) -> None:
        """Each defect fails exactly x402.receipt.quote_signature, with upstream's code(s) for it."""
        assert failing(with_receipt(healthy(), edit)) == {"x402.receipt.quote_signature": codes}

    def test_upstream_receipt_shape_is_refused(self) -> None:
        """The receipt upstream's gateway writes (algorithm "") fails as upstream's verifier fails it, while the
        Ed25519 bytes themselves would verify: the refusal is upstream's parse rule, not a crypto failure of ours."""
        e = with_receipt(healthy(), _quote_sig(lambda s: s.__setitem__("algorithm", "")))
        findings = {f.prop: f for f in paidcall.evaluate("x402.receipt.quote_signature", e)}
        assert findings["receipt.quote_signature_form"].code == "provider_quote_signature_parse_failed"
        assert "algorithm must be ed25519" in findings["receipt.quote_signature_form"].message
        assert findings["receipt.quote_key_pinned"].status == "pass"

    def test_no_quote_nothing_to_reverify(self) -> None:
        """Without a quote anywhere (none offered, none bound) the check passes; the offer check judges the 402."""

        def unquoted(r: dict[str, Any]) -> None:
            for key in ("providerQuotePayload", "providerQuoteSignature"):
                r.pop(key)
            r["bindings"].pop("providerQuoteSig")

        e = with_headers(
            with_receipt(healthy(), unquoted), "first-call", _del("x-nooterra-provider-quote-signature")
        )
        assert "x402.receipt.quote_signature" not in failing(e)
        assert [f.prop for f in paidcall.evaluate("x402.receipt.quote_signature", e)] == [
            "receipt.quote_material"
        ]


class TestUpstreamVerifierMap:
    """The verdict table's map from upstream's receipt-verifier codes to our checks names real codes of ours."""

    def test_every_named_code_is_one_we_report(self) -> None:
        """Each `names` entry is a failure code the suite's source emits, and no upstream code is a listed gap."""
        table = yaml.safe_load((ROOT / "tests/upstream/nooterra_upstream_verdicts.yaml").read_text())
        verifier = table["receiptVerifier"]
        source = "".join(p.read_text() for p in (ROOT / "conformance").rglob("*.py"))
        for code, mapped in verifier["codes"].items():
            assert mapped["check"].split("[", 1)[0] in paidcall.PROPERTIES, code
            for name in mapped["names"]:
                emitted = f'"{name}"' in source or any(  # codes built as f"{kind}_{suffix}"
                    name == f"{kind}_{suffix}" and f'"{kind}"' in source
                    for kind in ("decision_record", "settlement_receipt", "request_hash", "response_hash")
                    for suffix in ("hash_mismatch", "hash_invalid", "binding_mismatch")
                )
                assert emitted, (code, name)
        assert verifier["gaps"] == {}

    def test_missing_embedded_provider_key_is_reported(self) -> None:
        """A receipt without the provider key upstream's verifier needs fails as upstream fails it."""
        e = with_receipt(
            healthy(), lambda r: r["verificationContext"].__setitem__("providerSigningKey", None)
        )
        assert failing(e) == {"x402.receipt.provider_signature": {"provider_signature_key_missing"}}


class TestReplay:
    """The replay audit."""

    def test_second_settlement(self) -> None:
        """A replay that adds a receipt and a settlement, with a new decision, fails settles_once."""
        e = healthy()
        x = e.exchange("receipts-after-replay")
        assert x is not None
        body = x.json()
        body["receipts"].append({**body["receipts"][0], "receiptId": "rcpt_setl_2"})
        e = replace_exchange(e, "receipts-after-replay", body=json.dumps(body).encode())
        e = with_headers(e, "replay", _set("x-nooterra-decision-id", "dec_setl_2"))
        assert failing(e) == {"x402.replay.settles_once": {"replay_created_receipt", "replay_new_decision"}}

    def test_rematerialized_receipt(self) -> None:
        """A receipt served differently later fails refetch_stable only."""

        def later(r: dict[str, Any]) -> None:
            r["settlementReceipt"]["settledAt"] = iso(T0 + 9)
            r["settlementReceipt"]["receiptHash"] = x402.receipt_hash(r["settlementReceipt"])

        e = with_receipt(healthy(), later, steps=("receipt-by-id",))
        assert failing(e) == {"x402.replay.refetch_stable": {"receipt_changed_on_refetch"}}

    def test_replay_not_allowed(self) -> None:
        """Without an allowance for a second charge the replay is not run, and says which allowance it needs."""
        e = dataclasses.replace(
            healthy(cap=500), replay_skipped={"code": "spend_not_allowed", "message": "needs 1000"}
        )
        with pytest.raises(SpendNotAllowed, match="needs 1000"):
            paidcall.evaluate("x402.replay.settles_once", e)


# --- the bundle and verify-receipt -------------------------------------------------------------


def invoke(*argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process."""
    out, err = io.StringIO(), io.StringIO()
    return run(list(argv), stdout=out, stderr=err), out.getvalue(), err.getvalue()


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """The healthy evidence written as a bundle, with a secret the redactor must scrub."""
    e = with_headers(healthy(), "first-call", _set("x-debug-echo", "tok_secret_ops_value"))
    return paidcall_bundle.write(e, tmp_path, Redactor({"tok_secret_ops_value"}))


def reseal(bundle: Path) -> None:
    """Rewrite the manifest for the files as they are now (an editor covering its tracks)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    for entry in manifest["files"]:
        data = (bundle / entry["path"]).read_bytes()
        entry.update(sha256=sha256_hex(data), bytes=len(data))
    manifest["bundleSha256"] = canonical_hash(manifest["files"])
    (bundle / "manifest.json").write_text(json.dumps(manifest))


class TestBundle:
    """Writing, loading and verifying the artifact bundle offline."""

    def test_round_trip(self, bundle: Path) -> None:
        """The loaded evidence judges like the live one, and the token never reaches a file."""
        assert bundle.name == GATE
        loaded = paidcall_bundle.load(bundle)
        assert loaded.token_value is None
        assert failing(loaded) == {}
        everything = "".join(p.read_text() for p in bundle.rglob("*.json"))
        assert (healthy().token_value or "x") not in everything
        assert "tok_secret_ops_value" not in everything
        assert {p.name for p in bundle.iterdir()} == {"manifest.json", "context.json", "http", "offer.json", "receipt.json",
                                                      "provider-keyset.json", "api-keyset.json"}  # fmt: skip

    def test_verify_receipt_passes(self, bundle: Path) -> None:
        """verify-receipt on a healthy bundle: exit 0, every check PASS, the token signature noted as not repeatable."""
        code, out, err = invoke("verify-receipt", str(bundle))
        assert (code, err) == (0, "")
        assert out.count("PASS  x402.") == len(paidcall.PROPERTIES)
        assert "not repeatable offline" in out
        assert out.rstrip().endswith(
            f"verdict: pass ({len(paidcall.PROPERTIES)} passed, 0 failed, 0 not performed)"
        )

    def test_tampered_receipt_fails_naming_the_property(self, bundle: Path) -> None:
        """Raising the payout in every copy of the receipt and resealing the manifest: exit 1, the properties named."""
        for rel in (
            "receipt.json",
            "http/06-receipts.json",
            "http/09-receipts-after-replay.json",
            "http/10-receipt-by-id.json",
        ):
            path = bundle / rel
            text = (
                path.read_text()
                .replace('\\"releasedAmountCents\\":487', '\\"releasedAmountCents\\":500')
                .replace('"releasedAmountCents": 487', '"releasedAmountCents": 500')
            )
            path.write_text(text)
            if rel.startswith("http/"):
                doc = json.loads(text)
                body = doc["response"]["body"].encode()
                doc["response"].update(bodySha256=sha256_hex(body), bodyBytes=len(body))
                path.write_text(json.dumps(doc))
        reseal(bundle)
        code, out, _ = invoke("verify-receipt", str(bundle))
        assert code == 1
        assert "FAIL  x402.receipt.kernel_hashes" in out
        assert "receipt.kernel_hashes: settlement_receipt_hash_mismatch" in out
        assert "verdict: fail" in out

    @pytest.mark.parametrize(
        ("damage", "needle"),
        [
            (lambda b: (b / "manifest.json").unlink(), "manifest.json: missing"),
            (lambda b: (b / "manifest.json").write_text("{"), "manifest.json: line 1, column 2: not JSON"),
            (lambda b: (b / "receipt.json").unlink(), "receipt.json: listed in manifest.json but missing"),
            (lambda b: (b / "http" / "04-paid-call.json").write_text("{}"), "04-paid-call.json: sha256"),
            (lambda b: (b / "notes.txt").write_text("x"), "notes.txt: not listed in manifest.json"),
            (
                lambda b: (
                    (b / "offer.json").write_text(
                        json.dumps({**json.loads((b / "offer.json").read_text()), "amountCents": 1})
                    ),
                    reseal(b),
                ),
                "offer.json: does not say what the HTTP exchanges",
            ),
            (
                lambda b: (
                    (b / "context.json").write_text(
                        json.dumps({**json.loads((b / "context.json").read_text()), "holdbackBps": "x"})
                    ),
                    reseal(b),
                ),
                "context.json: ",
            ),
            (lambda b: shutil.rmtree(b), "not a directory"),
        ],
        ids=[
            "no-manifest",
            "manifest-not-json",
            "file-missing",
            "file-edited",
            "extra-file",
            "copy-disagrees",
            "schema",
            "no-bundle",
        ],
    )
    def test_bad_bundles_exit_2(self, bundle: Path, damage: Callable[[Path], Any], needle: str) -> None:
        """A missing, malformed or edited bundle is bad input: exit 2, one line naming the file, no traceback."""
        damage(bundle)
        code, out, err = invoke("verify-receipt", str(bundle))
        assert code == 2, out
        assert needle in err
        assert "Traceback" not in err
        assert len(err.splitlines()) == 1

    def test_load_error_is_a_config_error(self, tmp_path: Path) -> None:
        """The loader reports through ConfigError (exit 2 in the CLI)."""
        with pytest.raises(ConfigError, match="not a directory"):
            paidcall_bundle.load(tmp_path / "nope")

    def test_unpaid_bundle_is_named_after_its_start(self, tmp_path: Path) -> None:
        """Without a gate the bundle is named no-gate-<time> and verifies as failing, not as bad input."""
        e = dataclasses.replace(
            healthy(),
            gate_id=None,
            exchanges=healthy().exchanges[:1],
            refused={"code": "no_gate", "message": "none"},
        )
        e = with_headers(e, "first-call", _del("x-nooterra-gate-id"))
        path = paidcall_bundle.write(e, tmp_path, Redactor())
        assert path.name.startswith("no-gate-")
        code, out, _ = invoke("verify-receipt", str(path))
        assert code == 1
        assert "FAIL  x402.offer.gate_id" in out


class TestSpendArguments:
    """--allow-spend-cents is a whole number of cents."""

    @pytest.mark.parametrize("value", ["-5", "ten", "1.5"])
    def test_bad_allowance_is_a_usage_error(self, value: str) -> None:
        """Anything but a whole number is exit 2 with one error line."""
        code, _, err = invoke("run", "--profile", "nooterra", "--allow-spend-cents", value)
        assert code == 2
        assert "--allow-spend-cents" in err
        assert len(err.splitlines()) == 1


class TestSpendGate:
    """Through `gates run`: nothing is paid without an allowance; with one, a dead gateway errors and is recorded."""

    ARGS = ("run", "--profile", "nooterra", "--gate", "paid-call-e2e", "--gate", "receipt-verification",
            "--set", "serving_mode=self-host", "--set", "gateway.base_url=http://127.0.0.1:1",
            "--set", "api.base_url=http://127.0.0.1:1", "--quiet")  # fmt: skip

    def test_without_allowance_nothing_runs(self, tmp_path: Path) -> None:
        """Every paid check is not_run/spend_not_allowed, the gates are incomplete (exit 3) and no bundle exists."""
        code, out, _ = invoke(*self.ARGS, "--out", str(tmp_path))
        assert code == 3, out
        for gate in ("paid-call-e2e", "receipt-verification"):
            report = json.loads((tmp_path / "gates" / f"{gate}.json").read_text())
            assert {(c["status"], c["failureCode"]) for c in report["checks"]} == {
                ("not_run", "spend_not_allowed")
            }
        assert not (tmp_path / "paid-call").exists()

    def test_unreachable_gateway_errors_and_is_recorded(self, tmp_path: Path) -> None:
        """With an allowance the call is attempted: unreachable is an error (exit 3), never a pass, and the
        attempt is a bundle that verify-receipt judges failing."""
        code, out, _ = invoke(*self.ARGS, "--allow-spend-cents", "100", "--out", str(tmp_path))
        assert code == 3, out
        report = json.loads((tmp_path / "gates" / "paid-call-e2e.json").read_text())
        assert {(c["status"], c["failureCode"]) for c in report["checks"]} == {("error", "probe_unreachable")}
        (bundle,) = (tmp_path / "paid-call").iterdir()
        assert bundle.name.startswith("no-gate-")
        code, out, _ = invoke("verify-receipt", str(bundle))
        assert code == 1
        assert "FAIL  x402.offer.payment_required: probe_unreachable" in out


class TestStatusBindingAbsentOrDifferent:
    """x402.receipt.http_bindings tells a status the receipt does not bind from one it binds wrongly."""

    def test_binding_absent_but_evidence_ref_present_passes(self) -> None:
        """Upstream's API leaves bindings.response.status null (src/api/app.js:57599-57604): the http:status ref binds it."""

        def no_binding(r: dict[str, Any]) -> None:
            r["bindings"]["response"]["status"] = None
            if r.get("decisionRecord", {}).get("bindings"):
                r["decisionRecord"]["bindings"]["response"]["status"] = None

        assert "x402.receipt.http_bindings" not in failing(with_receipt(healthy(), no_binding))

    def test_no_status_anywhere_is_absent_not_a_mismatch(self) -> None:
        """No evidence ref and no binding: response_status_binding_absent."""

        def nothing(r: dict[str, Any]) -> None:
            r["evidenceRefs"] = [ref for ref in r["evidenceRefs"] if not ref.startswith("http:status:")]
            r["bindings"]["response"].pop("status", None)
            if r.get("decisionRecord", {}).get("bindings"):
                r["decisionRecord"]["bindings"]["response"].pop("status", None)

        assert failing(with_receipt(healthy(), nothing)).get("x402.receipt.http_bindings") == {
            "response_status_binding_absent"
        }

    def test_a_different_status_is_a_mismatch(self) -> None:
        """A bound status other than the one received: response_status_binding_mismatch."""
        found = failing(with_receipt(healthy(), lambda r: r["bindings"]["response"].update(status=500)))
        assert found.get("x402.receipt.http_bindings") == {"response_status_binding_mismatch"}


class TestVisibilityAndUniquePath:
    """Records the API has just written are read again within a budget; every run calls its own path."""

    @staticmethod
    def _reads(monkeypatch: pytest.MonkeyPatch, statuses: list[int]) -> list[str]:
        from conformance.probes import x402 as probe

        calls: list[str] = []

        def fake(ctx: Any, step: str, url: str, headers: dict[str, str]) -> Exchange:
            calls.append(url)
            return Exchange(step=step, method="GET", url=url, at=iso(0), status=statuses[len(calls) - 1],
                            body=b'{"receipts": []}')  # fmt: skip

        monkeypatch.setattr(probe, "request", fake)
        monkeypatch.setattr(probe.time, "sleep", lambda _: None)
        return calls

    def test_a_gate_that_shows_late_is_read_again(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """404 twice (the API reloading its view), then 200: visible, after three reads."""
        from conformance.probes.x402 import _found, poll_visible

        calls = self._reads(monkeypatch, [404, 404, 200])
        ex, seen = poll_visible(None, "gate", "http://api/x402/gate/g", {}, _found, 60.0)  # type: ignore[arg-type]
        assert ex.status == 200
        assert (seen["attempts"], seen["visible"], seen["budgetMs"]) == (3, True, 60_000)
        assert len(calls) == 3

    def test_a_record_that_never_shows_is_reported_as_seen(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With the budget spent, the last answer stands: the check judges it (no pass on a race either)."""
        from conformance.probes.x402 import _listed, poll_visible

        self._reads(monkeypatch, [200])
        ex, seen = poll_visible(None, "receipts", "http://api/x402/receipts", {}, _listed, 0.0)  # type: ignore[arg-type]
        assert ex.status == 200
        assert (seen["attempts"], seen["visible"]) == (1, False)

    def test_each_run_calls_its_own_path(self) -> None:
        """The gateway keys a gate on URL and offer (x402-gateway server.js:782): two runs never share a path."""
        from conformance.probes.x402 import PaidToolCall

        call = PaidToolCall(name="n", gateway="g", path="/exa/search?q=a", api="a", upstream="u", provider_keyset="k",
                            pinned_key_ids=(), holdback_bps=0, tenant="t", run_param="gatesRun")  # fmt: skip
        first, second = call.sent_path(), call.sent_path()
        assert first != second
        assert first.startswith("/exa/search?q=a&gatesRun=")
        assert dataclasses.replace(call, path="/x").sent_path().startswith("/x?gatesRun=")
        assert dataclasses.replace(call, run_param="").sent_path() == "/exa/search?q=a"

    def test_visibility_is_kept_in_the_bundle(self, tmp_path: Path) -> None:
        """context.json records how long each record took to show, and reads back."""
        e = dataclasses.replace(
            healthy(),
            visibility={"receipts": {"attempts": 2, "waitedMs": 51, "budgetMs": 3000, "visible": True}},
        )
        written = paidcall_bundle.write(e, tmp_path, Redactor(set()))
        assert paidcall_bundle.load(written).visibility == e.visibility
