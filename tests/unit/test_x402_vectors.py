"""`conformance.x402` against every crypto entry of the upstream vectors, and each way the entries can be broken.

The vectors (``shared/reference/nooterra-test-vectors.json``, key ``crypto``) were produced by upstream's
``src/core`` with the dev-only demo key: a key id, a SettlementDecisionRecord.v2 + SettlementReceipt.v1
pair, a ToolProviderSignature.v1 over a JSON response, a NooterraPay token and its keyset, and a
request-binding example. Every value is recomputed here; every tampering must be caught with its code.
"""

from __future__ import annotations

import base64
import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from conformance import x402
from conformance.canonical import canonical_hash, canonical_json

SHARED = Path(os.environ.get("GATES_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared")
VECTORS = SHARED / "reference" / "nooterra-test-vectors.json"

pytestmark = pytest.mark.skipif(not VECTORS.is_file(), reason=f"no test vectors at {VECTORS}")

INSIDE_WINDOW = 1774396900  # between the token's iat (1774396800) and exp (1774397100)


@pytest.fixture(scope="module")
def v() -> dict[str, Any]:
    """The ``crypto`` entries of the upstream vectors."""
    crypto: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))["crypto"]
    return crypto


class TestKeys:
    """Key ids, JWK ``x`` and thumbprints of the demo key."""

    def test_key_id_from_pem(self, v: dict[str, Any]) -> None:
        """The key id is ``key_`` + 24 hex of sha256 of the trimmed PEM; surrounding whitespace does not change it."""
        assert x402.key_id_from_pem(v["publicKeyPem"]) == v["keyIdFromPem"]
        assert x402.key_id_from_pem("\n" + v["publicKeyPem"] + "\n") == v["keyIdFromPem"]
        assert x402.key_id_shape_ok(v["keyIdFromPem"])

    def test_jwk_round_trip(self, v: dict[str, Any]) -> None:
        """The PEM's JWK ``x`` is the keyset's, and the PEM rebuilt from ``x`` is byte-identical to the vector's."""
        jwk = v["nooterraPayKeyset"]["keys"][0]
        assert x402.jwk_x_from_pem(v["publicKeyPem"]) == jwk["x"]
        assert x402.pem_from_jwk_x(jwk["x"]) == v["publicKeyPem"]

    def test_keyset_reads_the_demo_key(self, v: dict[str, Any]) -> None:
        """The keyset yields the demo key under its kid, and the kid is the PEM's own key id."""
        keys = x402.provider_keyset(v["nooterraPayKeyset"])
        assert list(keys) == [v["keyIdFromPem"]]
        assert keys[v["keyIdFromPem"]].pem == v["publicKeyPem"]
        assert keys[v["keyIdFromPem"]].fingerprint == v["keyIdFromPem"]

    def test_thumbprint_is_hex_of_the_canonical_jwk(self, v: dict[str, Any]) -> None:
        """The receipt thumbprint is H({crv, kty, x}) in hex."""
        x = v["nooterraPayKeyset"]["keys"][0]["x"]
        assert x402.jwk_thumbprint(x) == canonical_hash({"kty": "OKP", "x": x, "crv": "Ed25519"})
        assert x402.is_sha256_hex(x402.jwk_thumbprint(x))

    @pytest.mark.parametrize(
        "document",
        [
            {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]},
            {"keys": "nope"},
            [],
        ],
        ids=["short-x", "keys-not-a-list", "not-an-object"],
    )
    def test_malformed_keysets_are_refused(self, document: Any) -> None:
        """A key that is not 32 bytes, or a document without a keys array, is ``keyset_invalid``."""
        with pytest.raises(x402.VerificationError) as info:
            x402.provider_keyset(document)
        assert info.value.code == "keyset_invalid"

    def test_duplicate_kid_is_refused(self, v: dict[str, Any]) -> None:
        """The same kid listed twice is ambiguous, so the keyset is refused."""
        jwk = v["nooterraPayKeyset"]["keys"][0]
        with pytest.raises(x402.VerificationError, match="listed twice"):
            x402.provider_keyset({"keys": [jwk, jwk]})


class TestKernel:
    """decisionHash, receiptHash and the SettlementKernel.v1 invariants of the vector pair."""

    def test_hashes_recompute(self, v: dict[str, Any]) -> None:
        """Both hashes recompute from the records without their hash fields."""
        assert x402.decision_hash(v["decisionRecord"]) == v["decisionRecord"]["decisionHash"]
        assert x402.receipt_hash(v["settlementReceipt"]) == v["settlementReceipt"]["receiptHash"]

    def test_pair_is_valid(self, v: dict[str, Any]) -> None:
        """The upstream kernel verifier found the pair valid; so does this one, with and without the run's ids."""
        assert v["kernelVerification"] == {"valid": True, "errors": []}
        assert x402.kernel_errors(v["decisionRecord"], v["settlementReceipt"]) == []
        assert (
            x402.kernel_errors(
                v["decisionRecord"],
                v["settlementReceipt"],
                run_id="x402_x402gate_demo",
                settlement_id="setl_x402_x402gate_demo",
            )
            == []
        )

    @pytest.mark.parametrize(
        ("record", "change", "code"),
        [
            ("settlementReceipt", {"releasedAmountCents": 499}, "settlement_receipt_hash_mismatch"),
            ("settlementReceipt", {"receiptHash": "z" * 64}, "settlement_receipt_hash_invalid"),
            ("decisionRecord", {"decisionReason": "edited"}, "decision_record_hash_mismatch"),
            ("decisionRecord", {"decisionHash": "A" * 64}, "decision_record_hash_invalid"),
        ],
        ids=["receipt-content", "receipt-hash-not-hex", "decision-content", "decision-hash-uppercase"],
    )
    def test_tampering_breaks_a_hash(
        self, v: dict[str, Any], record: str, change: dict[str, Any], code: str
    ) -> None:
        """Editing a record after it was hashed, or a malformed hash, is caught with its kernel code."""
        pair = {"decisionRecord": v["decisionRecord"], "settlementReceipt": v["settlementReceipt"]}
        pair[record] = {**pair[record], **change}
        assert code in x402.kernel_errors(pair["decisionRecord"], pair["settlementReceipt"])

    def test_rehashed_decision_breaks_the_binding(self, v: dict[str, Any]) -> None:
        """A decision amended and re-hashed after the receipt bound it no longer matches ``decisionRef``."""
        decision = {**v["decisionRecord"], "decisionReason": "amended"}
        decision["decisionHash"] = x402.decision_hash(decision)
        assert x402.kernel_errors(decision, v["settlementReceipt"]) == [
            "settlement_receipt_decision_hash_mismatch"
        ]

    def test_run_and_settlement_ids_bind(self, v: dict[str, Any]) -> None:
        """The records must name the run and settlement the caller expects, and each other's."""
        errors = x402.kernel_errors(
            v["decisionRecord"], v["settlementReceipt"], run_id="x402_other", settlement_id="setl_other"
        )
        assert errors == [
            "decision_record_run_id_mismatch",
            "settlement_receipt_run_id_mismatch",
            "decision_record_settlement_id_mismatch",
            "settlement_receipt_settlement_id_mismatch",
        ]

    def test_temporal_order(self, v: dict[str, Any]) -> None:
        """Settling before the decision, or before the receipt was created, is refused; so is a bad timestamp."""
        receipt = {
            **v["settlementReceipt"],
            "createdAt": "2026-03-24T23:59:59.000Z",
            "settledAt": "2026-03-24T23:59:58.000Z",
        }
        receipt["receiptHash"] = x402.receipt_hash(receipt)
        assert x402.kernel_errors(v["decisionRecord"], receipt) == [
            "settlement_receipt_before_decision",
            "settlement_receipt_settled_before_decision",
            "settlement_receipt_settled_before_created",
        ]
        decision = {**v["decisionRecord"], "decidedAt": "yesterday"}
        decision["decisionHash"] = x402.decision_hash(decision)
        receipt = {
            **v["settlementReceipt"],
            "decisionRef": {"decisionId": "dec_x402_demo", "decisionHash": decision["decisionHash"]},
        }
        receipt["receiptHash"] = x402.receipt_hash(receipt)
        assert x402.kernel_errors(decision, receipt) == ["decision_record_decided_at_invalid"]

    def test_v2_policy_hash_rules(self, v: dict[str, Any]) -> None:
        """A v2 decision needs a 64-hex policyHashUsed."""
        for value, code in (
            (None, "decision_record_policy_hash_used_missing"),
            ("sha256:" + "a" * 64, "decision_record_policy_hash_used_invalid"),
        ):
            decision = {**v["decisionRecord"], "policyHashUsed": value}
            decision["decisionHash"] = x402.decision_hash(decision)
            receipt = {
                **v["settlementReceipt"],
                "decisionRef": {"decisionId": "dec_x402_demo", "decisionHash": decision["decisionHash"]},
            }
            receipt["receiptHash"] = x402.receipt_hash(receipt)
            assert x402.kernel_errors(decision, receipt) == [code]

    def test_missing_records(self, v: dict[str, Any]) -> None:
        """A missing decision record or receipt is named, not a crash."""
        assert x402.kernel_errors(None, v["settlementReceipt"]) == ["decision_record_missing"]
        assert x402.kernel_errors(v["decisionRecord"], "nope") == ["settlement_receipt_missing"]


class TestProviderSignature:
    """The ToolProviderSignature.v1 vector and its response hash."""

    def test_response_hash_of_the_json_body(self, v: dict[str, Any]) -> None:
        """A JSON body hashes canonically whatever its formatting; other bodies hash as raw bytes."""
        pretty = json.dumps(v["providerResponseBody"], indent=2).encode()
        assert x402.response_sha256(pretty, "application/json; charset=utf-8") == v["providerResponseHash"]
        assert x402.response_sha256(pretty, "text/plain") != v["providerResponseHash"]
        assert x402.response_sha256(b"{not json", "application/json") == x402.response_sha256(
            b"{not json", None
        )

    def test_vector_signature_verifies(self, v: dict[str, Any]) -> None:
        """The vector's signature verifies under the demo key, bound to the vector response hash."""
        assert v["providerSignatureVerifies"] is True
        sig = v["providerSignature"]
        assert (
            x402.provider_payload_hash(sig["responseHash"], sig["nonce"], sig["signedAt"])
            == sig["payloadHash"]
        )
        x402.verify_provider_signature(sig, v["publicKeyPem"], response_hash=v["providerResponseHash"])

    def test_case_of_hex_fields_is_normalized(self, v: dict[str, Any]) -> None:
        """Upper-case responseHash/nonce hash the same as upstream's lower-casing normalizer does."""
        sig = v["providerSignature"]
        shouty = {
            **sig,
            "responseHash": sig["responseHash"].upper(),
            "nonce": sig["nonce"].upper(),
            "payloadHash": sig["payloadHash"].upper(),
        }
        x402.verify_provider_signature(shouty, v["publicKeyPem"], response_hash=v["providerResponseHash"])

    @pytest.mark.parametrize(
        ("change", "code"),
        [
            ({"schemaVersion": "ToolProviderSignature.v2"}, "provider_signature_schema_invalid"),
            ({"algorithm": "rsa"}, "provider_signature_algorithm_invalid"),
            ({"nonce": "xyz"}, "provider_signature_fields_invalid"),
            ({"signedAt": "later"}, "provider_signature_fields_invalid"),
            ({"keyId": "key_000000000000000000000000"}, "provider_signature_key_id_mismatch"),
            ({"nonce": "00112233445566778899aabbccddeefe"}, "provider_signature_payload_hash_mismatch"),
            ({"signatureBase64": base64.b64encode(bytes(64)).decode()}, "provider_signature_crypto_invalid"),
            ({"signatureBase64": "%%%"}, "provider_signature_crypto_invalid"),
        ],
        ids=[
            "schema",
            "algorithm",
            "nonce-not-hex",
            "signed-at",
            "key-id",
            "payload-hash",
            "zero-signature",
            "not-base64",
        ],
    )
    def test_each_tampering_has_its_code(self, v: dict[str, Any], change: dict[str, Any], code: str) -> None:
        """Every field of the signature is covered, and each defect is reported with its own code."""
        with pytest.raises(x402.VerificationError) as info:
            x402.verify_provider_signature({**v["providerSignature"], **change}, v["publicKeyPem"])
        assert info.value.code == code

    def test_signature_bound_to_another_response(self, v: dict[str, Any]) -> None:
        """A valid signature over a different response hash does not vouch for this response."""
        with pytest.raises(x402.VerificationError) as info:
            x402.verify_provider_signature(v["providerSignature"], v["publicKeyPem"], response_hash="0" * 64)
        assert info.value.code == "provider_signature_response_hash_mismatch"

    def test_other_key_does_not_verify(self, v: dict[str, Any]) -> None:
        """Under a different key the same signature fails on the key id, and on the signature once the id is forged."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        other = Ed25519PrivateKey.generate().public_key()
        pem = (
            other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
            .strip()
        )
        with pytest.raises(x402.VerificationError, match="key_id_mismatch"):
            x402.verify_provider_signature(v["providerSignature"], pem)
        forged = {**v["providerSignature"], "keyId": x402.key_id_from_pem(pem)}
        with pytest.raises(x402.VerificationError, match="crypto_invalid"):
            x402.verify_provider_signature(forged, pem)


class TestPayToken:
    """The NooterraPay token vector under its keyset."""

    def test_decodes_to_the_envelope(self, v: dict[str, Any]) -> None:
        """The token is base64url of the canonical envelope; payload hash and token sha256 are the vector's."""
        decoded = x402.decode_pay_token(v["nooterraPayToken"])
        envelope = v["nooterraPayEnvelope"]
        assert (decoded.kid, decoded.payload, decoded.signature) == (
            envelope["kid"],
            envelope["payload"],
            envelope["sig"],
        )
        assert decoded.canonical
        assert decoded.sha256 == v["nooterraPayTokenSha256"]
        assert canonical_hash(decoded.payload) == v["nooterraPayPayloadHash"]
        assert x402.b64url_encode(canonical_json(envelope).encode()) == v["nooterraPayToken"]

    def test_verifies_inside_its_window(self, v: dict[str, Any]) -> None:
        """Upstream's verifier said ok inside the window; so does this one, at iat and at exp exactly."""
        assert v["nooterraPayVerify"] == {"ok": True, "code": None}
        for now in (INSIDE_WINDOW, 1774396800, 1774397100):
            token = x402.verify_pay_token(v["nooterraPayToken"], v["nooterraPayKeyset"], now=now)
            assert token.payload == v["nooterraPayEnvelope"]["payload"]

    def test_offer_fields_match(self, v: dict[str, Any]) -> None:
        """The payload names the vector's payee, 500 USD cents; any other offer is a provider-kit mismatch."""
        payload = v["nooterraPayEnvelope"]["payload"]
        provider = "agt_x402_payee_127_0_0_1:9402"
        assert (
            x402.pay_token_offer_errors(payload, provider_id=provider, amount_cents=500, currency="USD") == []
        )
        assert x402.pay_token_offer_errors(
            payload, provider_id="agt_other", amount_cents=501, currency="EUR"
        ) == [
            "NOOTERRA_PAY_AUDIENCE_MISMATCH",
            "NOOTERRA_PAY_PAYEE_MISMATCH",
            "NOOTERRA_PAY_AMOUNT_MISMATCH",
            "NOOTERRA_PAY_CURRENCY_MISMATCH",
        ]

    def test_expired_after_exp(self, v: dict[str, Any]) -> None:
        """One second past exp the token is expired."""
        with pytest.raises(x402.VerificationError) as info:
            x402.verify_pay_token(v["nooterraPayToken"], v["nooterraPayKeyset"], now=1774397101)
        assert info.value.code == "NOOTERRA_PAY_EXPIRED"

    def test_unknown_kid(self, v: dict[str, Any]) -> None:
        """A keyset without the token's kid cannot vouch for it."""
        keyset = copy.deepcopy(v["nooterraPayKeyset"])
        keyset["keys"][0]["kid"] = "key_ffffffffffffffffffffffff"
        with pytest.raises(x402.VerificationError) as info:
            x402.verify_pay_token(v["nooterraPayToken"], keyset, now=INSIDE_WINDOW)
        assert info.value.code == "NOOTERRA_PAY_UNKNOWN_KID"

    def test_edited_payload_fails_the_signature(self, v: dict[str, Any]) -> None:
        """Raising the amount inside a re-encoded envelope breaks the signature."""
        envelope = copy.deepcopy(v["nooterraPayEnvelope"])
        envelope["payload"]["amountCents"] = 5000
        token = x402.b64url_encode(canonical_json(envelope).encode())
        with pytest.raises(x402.VerificationError) as info:
            x402.verify_pay_token(token, v["nooterraPayKeyset"], now=INSIDE_WINDOW)
        assert info.value.code == "NOOTERRA_PAY_SIGNATURE_INVALID"

    def test_non_canonical_envelope(self, v: dict[str, Any]) -> None:
        """The same signed envelope, encoded with other key order, is refused as not canonical."""
        envelope = v["nooterraPayEnvelope"]
        reordered = json.dumps(
            {"v": 1, "sig": envelope["sig"], "payload": envelope["payload"], "kid": envelope["kid"]},
            separators=(",", ":"),
        )
        token = x402.b64url_encode(reordered.encode())
        assert not x402.decode_pay_token(token).canonical
        with pytest.raises(x402.VerificationError) as info:
            x402.verify_pay_token(token, v["nooterraPayKeyset"], now=INSIDE_WINDOW)
        assert info.value.code == "NOOTERRA_PAY_TOKEN_NOT_CANONICAL"

    @pytest.mark.parametrize(
        "token",
        ["***", x402.b64url_encode(b"[1]"), x402.b64url_encode(b'{"v":2,"kid":"k","payload":{},"sig":"s"}')],
    )
    def test_garbage_is_not_a_token(self, token: str) -> None:
        """Non-base64url text, a non-object envelope or another version is ``NOOTERRA_PAY_TOKEN_INVALID``."""
        with pytest.raises(x402.VerificationError) as info:
            x402.decode_pay_token(token)
        assert info.value.code == "NOOTERRA_PAY_TOKEN_INVALID"


class TestRequestBinding:
    """The request-binding example."""

    def test_example_recomputes(self, v: dict[str, Any]) -> None:
        """GET, host with port, path with query and the empty-body digest give the vector's binding hash."""
        ex = v["requestBindingExample"]
        assert ex["bodySha256"] == x402.EMPTY_SHA256
        assert (
            x402.request_binding_sha256(ex["method"], ex["host"], ex["pathWithQuery"])
            == ex["requestBindingSha256"]
        )

    def test_method_and_host_are_normalized_path_is_not(self, v: dict[str, Any]) -> None:
        """Method is upper-cased and host lower-cased; the path and query are hashed exactly as sent."""
        ex = v["requestBindingExample"]
        assert (
            x402.request_binding_sha256("get", ex["host"].upper(), ex["pathWithQuery"])
            == ex["requestBindingSha256"]
        )
        assert (
            x402.request_binding_sha256("GET", ex["host"], ex["pathWithQuery"].replace("q=q", "q=Q"))
            != ex["requestBindingSha256"]
        )
