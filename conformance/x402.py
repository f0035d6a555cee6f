"""Nooterra x402 verification primitives: pure functions, no I/O.

Everything a third party needs to check a paid call and its receipt without trusting the operator:

* hashes: ``H(x) = sha256_hex(canonical_json(x))`` (`conformance.canonical`), the SettlementKernel.v1
  ``decisionHash``/``receiptHash`` and their invariants, the request-binding hash, the gateway's
  response hash (canonical JSON for JSON bodies, raw bytes otherwise);
* keys: the key id of an SPKI PEM (``key_`` + 24 hex of its sha256), JWK ``x`` and the hex JWK
  thumbprint receipts embed, a provider keyset (``ToolProviderKeyset.v1``/JWKS) read into PEMs;
* signatures: ``ToolProviderSignature.v1`` over a response hash, ``ToolProviderQuoteSignature.v1``
  over a quote, and NooterraPay tokens under the API's ``/.well-known/nooterra-keys.json``; every
  Ed25519 signature covers the 32 raw bytes of a hex digest, never the hex text;
* offers: the ``x-payment-required`` value in both forms (a JSON object, or ``k=v; k=v`` pairs);
* money: the holdback arithmetic (``released = amount - floor(amount * bps / 10000)``).

A check that does not hold raises `VerificationError` with a stable ``code`` (upstream's code where
upstream has one) or returns the codes as a list; nothing here prints or reads the network.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from conformance.canonical import CanonicalJsonError, canonical_hash, canonical_json, sha256_hex

__all__ = [
    "AMOUNT_KEYS",
    "EMPTY_SHA256",
    "PAY_TOKEN_TTL_S",
    "POLICY_DECISIONS",
    "KeysetKey",
    "PayToken",
    "VerificationError",
    "b64url_decode",
    "b64url_encode",
    "decision_hash",
    "decode_pay_token",
    "holdback_cents",
    "is_sha256_hex",
    "jwk_thumbprint",
    "jwk_x_from_pem",
    "kernel_errors",
    "key_id_from_pem",
    "key_id_shape_ok",
    "offer_amount",
    "parse_iso",
    "parse_payment_required",
    "pay_token_offer_errors",
    "pem_from_jwk_x",
    "provider_keyset",
    "provider_payload_hash",
    "receipt_hash",
    "request_binding_sha256",
    "response_sha256",
    "settlement_split",
    "verify_hash_signature",
    "verify_pay_token",
    "verify_provider_signature",
    "verify_quote_signature",
]

EMPTY_SHA256 = sha256_hex(b"")
PAY_TOKEN_TTL_S = 300
POLICY_DECISIONS = ("allow", "challenge", "deny", "escalate")
# The gateway takes the amount from the first positive safe integer among these offer keys.
AMOUNT_KEYS = ("amountCents", "amount_cents", "priceCents", "price_cents", "price", "amount")
MAX_SAFE_INTEGER = 2**53 - 1
PROVIDER_SIGNATURE_VERSION = "ToolProviderSignature.v1"
PROVIDER_PAYLOAD_VERSION = "ToolProviderSignaturePayload.v1"
QUOTE_SIGNATURE_VERSION = "ToolProviderQuoteSignature.v1"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NONCE = re.compile(r"^[0-9a-fA-F]{16,128}$")
_KEY_ID = re.compile(r"^key_[0-9a-f]{24}$")


class VerificationError(ValueError):
    """A hash, signature, token, key or offer does not verify; ``code`` names the property that failed."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message or code


# --- encodings --------------------------------------------------------------------------------


def b64url_encode(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url (re-padded first); `VerificationError` ``not_base64url`` when malformed."""
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise VerificationError("not_base64url", "characters outside the base64url alphabet")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise VerificationError("not_base64url", str(exc)) from exc


def decode_base64(text: Any) -> bytes:
    """Decode standard base64 strictly; `VerificationError` ``not_base64`` when malformed."""
    return _b64_decode(text)


def _b64_decode(text: Any) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError("not_base64", str(exc)) from exc


def is_sha256_hex(value: Any) -> bool:
    """Whether ``value`` is 64 lowercase hex characters."""
    return isinstance(value, str) and bool(_HEX64.match(value))


def parse_iso(value: Any) -> dt.datetime | None:
    """An ISO 8601 timestamp with a zone (``Z`` or an offset) as an aware datetime, else None."""
    if not isinstance(value, str) or not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d", value):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


# --- keys -------------------------------------------------------------------------------------


def _public_key(pem: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm) as exc:
        raise VerificationError("public_key_invalid", "not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise VerificationError("public_key_invalid", "not an Ed25519 public key")
    return key


def key_id_from_pem(pem: str) -> str:
    """``"key_" + sha256_hex(UTF-8 of the trimmed PEM)[:24]``: upstream's key id, a fingerprint of the PEM."""
    return "key_" + sha256_hex(pem.strip().encode("utf-8"))[:24]


def jwk_x_from_pem(pem: str) -> str:
    """The JWK ``x`` (base64url of the 32 raw public-key bytes) of an Ed25519 SPKI PEM."""
    raw = _public_key(pem).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return b64url_encode(raw)


def pem_from_jwk_x(x: str) -> str:
    """The SPKI PEM (no trailing newline) of the Ed25519 key whose JWK ``x`` is given."""
    raw = b64url_decode(x)
    if len(raw) != 32:
        raise VerificationError("public_key_invalid", f"JWK x decodes to {len(raw)} bytes, not 32")
    key = Ed25519PublicKey.from_public_bytes(raw)
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem.decode("ascii").strip()


def jwk_thumbprint(x: str) -> str:
    """Receipts' key thumbprint: ``H({"crv":"Ed25519","kty":"OKP","x":x})`` in hex (not base64url)."""
    return canonical_hash({"crv": "Ed25519", "kty": "OKP", "x": x})


@dataclass(frozen=True, slots=True, kw_only=True)
class KeysetKey:
    """One Ed25519 key of a published keyset: the ``kid`` it is listed under, its PEM and the PEM's key id."""

    kid: str
    pem: str
    x: str

    @property
    def fingerprint(self) -> str:
        """The key id its PEM hashes to (equal to ``kid`` for keys published under their own id)."""
        return key_id_from_pem(self.pem)


def provider_keyset(document: Any) -> dict[str, KeysetKey]:
    """The Ed25519 keys of a keyset document (``{keys: [{kty, crv, x, kid?}]}``) by kid.

    A key without ``kid`` is listed under its PEM's key id; entries that are not OKP/Ed25519 are ignored;
    a malformed ``x`` or a kid listed twice is a `VerificationError` (``keyset_invalid``).
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise VerificationError("keyset_invalid", "not an object with a keys array")
    out: dict[str, KeysetKey] = {}
    for entry in document["keys"]:
        if not isinstance(entry, Mapping) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            continue
        try:
            pem = pem_from_jwk_x(str(entry.get("x", "")))
        except VerificationError as exc:
            raise VerificationError("keyset_invalid", f"key {entry.get('kid')!r}: {exc.message}") from exc
        kid = str(entry.get("kid") or key_id_from_pem(pem))
        if kid in out:
            raise VerificationError("keyset_invalid", f"kid {kid!r} is listed twice")
        out[kid] = KeysetKey(kid=kid, pem=pem, x=str(entry["x"]))
    return out


def verify_hash_signature(pem_or_key: str | Ed25519PublicKey, hex_digest: str, signature: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature over the 32 raw bytes of ``hex_digest``."""
    key = _public_key(pem_or_key) if isinstance(pem_or_key, str) else pem_or_key
    if not is_sha256_hex(hex_digest) or len(signature) != 64:
        return False
    try:
        key.verify(signature, bytes.fromhex(hex_digest))
    except InvalidSignature:
        return False
    return True


# --- hashes -----------------------------------------------------------------------------------


def response_sha256(body: bytes, content_type: str | None) -> str:
    """The gateway's response hash: H(parsed body) when the content type is JSON and it parses, else sha256(body)."""
    if content_type and "application/json" in content_type.lower():
        try:
            return canonical_hash(json.loads(body))
        except (ValueError, CanonicalJsonError):
            pass
    return sha256_hex(body)


def request_binding_sha256(method: str, host: str, path_with_query: str, body: bytes = b"") -> str:
    """``sha256_hex("<METHOD>\\n<host lowercase>\\n<path?query>\\n<sha256 of body>")``, no trailing newline."""
    joined = f"{method.upper()}\n{host.lower()}\n{path_with_query}\n{sha256_hex(body)}"
    return sha256_hex(joined.encode("utf-8"))


def decision_hash(record: Mapping[str, Any]) -> str:
    """SettlementKernel.v1 ``decisionHash``: H(decision record without decisionHash and artifactHash)."""
    return canonical_hash({k: v for k, v in record.items() if k not in ("decisionHash", "artifactHash")})


def receipt_hash(receipt: Mapping[str, Any]) -> str:
    """SettlementKernel.v1 ``receiptHash``: H(settlement receipt without receiptHash and artifactHash)."""
    return canonical_hash({k: v for k, v in receipt.items() if k not in ("receiptHash", "artifactHash")})


def _hash_codes(kind: str, record: Mapping[str, Any], field: str, recompute: Any) -> list[str]:
    value = record.get(field)
    if not is_sha256_hex(value):
        return [f"{kind}_hash_invalid"]
    try:
        return [] if recompute(record) == value else [f"{kind}_hash_mismatch"]
    except CanonicalJsonError:
        return [f"{kind}_hash_invalid"]


def kernel_errors(
    decision: Any, receipt: Any, *, run_id: str | None = None, settlement_id: str | None = None
) -> list[str]:
    """The SettlementKernel.v1 codes that do not hold for a decision record and its settlement receipt.

    Hash integrity, identity binding (``decisionRef``, ``runId``, ``settlementId`` -- also against the
    settlement's own ids when given), temporal order, and the v2 decision field rules. Empty when valid.
    """
    if not isinstance(decision, Mapping):
        return ["decision_record_missing"]
    if not isinstance(receipt, Mapping):
        return ["settlement_receipt_missing"]
    errors = [
        *_hash_codes("decision_record", decision, "decisionHash", decision_hash),
        *_hash_codes("settlement_receipt", receipt, "receiptHash", receipt_hash),
    ]
    expected_run = run_id if run_id is not None else decision.get("runId")
    if run_id is not None and decision.get("runId") != run_id:
        errors.append("decision_record_run_id_mismatch")
    if receipt.get("runId") != expected_run:
        errors.append("settlement_receipt_run_id_mismatch")
    expected_settlement = settlement_id if settlement_id is not None else decision.get("settlementId")
    if settlement_id is not None and decision.get("settlementId") != settlement_id:
        errors.append("decision_record_settlement_id_mismatch")
    if receipt.get("settlementId") != expected_settlement:
        errors.append("settlement_receipt_settlement_id_mismatch")
    ref = receipt.get("decisionRef")
    if not isinstance(ref, Mapping):
        errors.append("settlement_receipt_decision_ref_missing")
    else:
        if ref.get("decisionId") != decision.get("decisionId"):
            errors.append("settlement_receipt_decision_id_mismatch")
        if ref.get("decisionHash") != decision.get("decisionHash"):
            errors.append("settlement_receipt_decision_hash_mismatch")
    decided = parse_iso(decision.get("decidedAt"))
    created = parse_iso(receipt.get("createdAt"))
    settled = parse_iso(receipt.get("settledAt")) if receipt.get("settledAt") is not None else None
    if decided is None:
        errors.append("decision_record_decided_at_invalid")
    if created is None:
        errors.append("settlement_receipt_created_at_invalid")
    if receipt.get("settledAt") is not None and settled is None:
        errors.append("settlement_receipt_settled_at_invalid")
    if decided is not None and created is not None and created < decided:
        errors.append("settlement_receipt_before_decision")
    if decided is not None and settled is not None and settled < decided:
        errors.append("settlement_receipt_settled_before_decision")
    if created is not None and settled is not None and settled < created:
        errors.append("settlement_receipt_settled_before_created")
    if decision.get("schemaVersion") == "SettlementDecisionRecord.v2":
        if decision.get("policyHashUsed") is None:
            errors.append("decision_record_policy_hash_used_missing")
        elif not is_sha256_hex(decision.get("policyHashUsed")):
            errors.append("decision_record_policy_hash_used_invalid")
        for field, code in (
            ("profileHashUsed", "decision_record_profile_hash_used_invalid"),
            ("verificationMethodHashUsed", "decision_record_verification_method_hash_used_invalid"),
        ):
            if decision.get(field) is not None and not is_sha256_hex(decision.get(field)):
                errors.append(code)
        version = decision.get("policyNormalizationVersion")
        if version is not None and not (isinstance(version, str) and 1 <= len(version) <= 64):
            errors.append("decision_record_policy_normalization_version_invalid")
    return errors


# --- provider signatures ----------------------------------------------------------------------


def provider_payload_hash(response_hash: str, nonce: str, signed_at: str) -> str:
    """H of the ``ToolProviderSignaturePayload.v1`` object (responseHash and nonce lower-cased, signedAt verbatim)."""
    return canonical_hash(
        {
            "schemaVersion": PROVIDER_PAYLOAD_VERSION,
            "responseHash": response_hash.lower(),
            "nonce": nonce.lower(),
            "signedAt": signed_at,
        }
    )


def verify_provider_signature(
    signature: Mapping[str, Any], public_key_pem: str, *, response_hash: str | None = None
) -> None:
    """Verify a ``ToolProviderSignature.v1`` under ``public_key_pem`` (and, if given, its binding to ``response_hash``).

    Codes: ``provider_signature_schema_invalid``, ``provider_signature_algorithm_invalid``,
    ``provider_signature_fields_invalid``, ``provider_signature_key_id_mismatch``,
    ``provider_signature_payload_hash_mismatch``, ``provider_signature_crypto_invalid``,
    ``provider_signature_response_hash_mismatch``.
    """
    if signature.get("schemaVersion") != PROVIDER_SIGNATURE_VERSION:
        raise VerificationError(
            "provider_signature_schema_invalid", f"schemaVersion {signature.get('schemaVersion')!r}"
        )
    if str(signature.get("algorithm", "")).lower() != "ed25519":
        raise VerificationError(
            "provider_signature_algorithm_invalid", f"algorithm {signature.get('algorithm')!r}"
        )
    claimed = signature.get("responseHash")
    nonce, signed_at = signature.get("nonce"), signature.get("signedAt")
    if not (isinstance(claimed, str) and is_sha256_hex(claimed.lower())):
        raise VerificationError("provider_signature_fields_invalid", "responseHash is not 64 hex")
    if not (isinstance(nonce, str) and _NONCE.match(nonce)):
        raise VerificationError("provider_signature_fields_invalid", "nonce is not 16..128 hex")
    if parse_iso(signed_at) is None:
        raise VerificationError(
            "provider_signature_fields_invalid", f"signedAt {signed_at!r} is not ISO 8601"
        )
    expected_id = key_id_from_pem(public_key_pem)
    if str(signature.get("keyId", "")).strip() != expected_id:
        raise VerificationError(
            "provider_signature_key_id_mismatch",
            f"keyId {signature.get('keyId')!r} is not the key's id {expected_id}",
        )
    payload = provider_payload_hash(claimed, nonce, str(signed_at))
    if payload != str(signature.get("payloadHash", "")).lower():
        raise VerificationError(
            "provider_signature_payload_hash_mismatch",
            f"payloadHash {signature.get('payloadHash')!r} != H(payload) {payload}",
        )
    try:
        raw = _b64_decode(signature.get("signatureBase64", ""))
    except VerificationError as exc:
        raise VerificationError("provider_signature_crypto_invalid", "signatureBase64 is not base64") from exc
    if not verify_hash_signature(public_key_pem, payload, raw):
        raise VerificationError("provider_signature_crypto_invalid", "the Ed25519 signature does not verify")
    if response_hash is not None and claimed.lower() != response_hash.lower():
        raise VerificationError(
            "provider_signature_response_hash_mismatch",
            f"the signature covers response hash {claimed}, the response hashes to {response_hash}",
        )


def verify_quote_signature(
    quote: Mapping[str, Any], signature: Mapping[str, Any], public_key_pem: str
) -> None:
    """Verify a ``ToolProviderQuoteSignature.v1`` (payloadHash = H(quote payload)) under ``public_key_pem``.

    Codes: ``quote_signature_schema_invalid``, ``quote_signature_key_id_mismatch``,
    ``quote_signature_payload_hash_mismatch``, ``quote_signature_crypto_invalid``.
    """
    if signature.get("schemaVersion") != QUOTE_SIGNATURE_VERSION:
        raise VerificationError(
            "quote_signature_schema_invalid", f"schemaVersion {signature.get('schemaVersion')!r}"
        )
    if str(signature.get("algorithm", "")).lower() != "ed25519":
        raise VerificationError("quote_signature_schema_invalid", f"algorithm {signature.get('algorithm')!r}")
    expected_id = key_id_from_pem(public_key_pem)
    if str(signature.get("keyId", "")).strip() != expected_id:
        raise VerificationError(
            "quote_signature_key_id_mismatch", f"keyId {signature.get('keyId')!r} != {expected_id}"
        )
    try:
        payload = canonical_hash(dict(quote))
    except CanonicalJsonError as exc:
        raise VerificationError(
            "quote_signature_payload_hash_mismatch", f"the quote cannot be hashed: {exc}"
        ) from exc
    if payload != str(signature.get("payloadHash", "")).lower():
        raise VerificationError("quote_signature_payload_hash_mismatch", f"payloadHash != H(quote) {payload}")
    try:
        raw = _b64_decode(signature.get("signatureBase64", ""))
    except VerificationError as exc:
        raise VerificationError("quote_signature_crypto_invalid", "signatureBase64 is not base64") from exc
    if not verify_hash_signature(public_key_pem, payload, raw):
        raise VerificationError("quote_signature_crypto_invalid", "the Ed25519 signature does not verify")


# --- NooterraPay tokens -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PayToken:
    """A decoded NooterraPay token: envelope key id, payload, signature and the token string's sha256."""

    kid: str
    payload: dict[str, Any]
    signature: str
    sha256: str
    canonical: bool  # the token is base64url(canonical_json(envelope)), as upstream mints it


def decode_pay_token(token: str) -> PayToken:
    """Decode (without verifying) a NooterraPay token; ``NOOTERRA_PAY_TOKEN_INVALID`` when it is not one."""
    try:
        envelope = json.loads(b64url_decode(token.strip()).decode("utf-8"))
    except (VerificationError, ValueError, UnicodeDecodeError) as exc:
        raise VerificationError("NOOTERRA_PAY_TOKEN_INVALID", "not a base64url JSON envelope") from exc
    if (
        not isinstance(envelope, dict)
        or envelope.get("v") != 1
        or not isinstance(envelope.get("payload"), dict)
    ):
        raise VerificationError("NOOTERRA_PAY_TOKEN_INVALID", "the envelope is not {v: 1, kid, payload, sig}")
    if not isinstance(envelope.get("kid"), str) or not isinstance(envelope.get("sig"), str):
        raise VerificationError("NOOTERRA_PAY_TOKEN_INVALID", "kid and sig must be strings")
    try:
        canonical = b64url_encode(canonical_json(envelope).encode("utf-8")) == token.strip()
    except CanonicalJsonError:
        canonical = False
    return PayToken(
        kid=envelope["kid"],
        payload=envelope["payload"],
        signature=envelope["sig"],
        sha256=sha256_hex(token.encode("utf-8")),
        canonical=canonical,
    )


def verify_pay_token(token: str, keyset: Any, *, now: float) -> PayToken:
    """Verify a NooterraPay token under a ``/.well-known/nooterra-keys.json`` keyset at unix time ``now``.

    Codes (provider-kit's): ``NOOTERRA_PAY_TOKEN_INVALID``, ``NOOTERRA_PAY_UNKNOWN_KID``,
    ``NOOTERRA_PAY_SIGNATURE_INVALID``, ``NOOTERRA_PAY_EXPIRED``; and ``NOOTERRA_PAY_TOKEN_NOT_CANONICAL``
    when the token is not base64url of the canonical envelope.
    """
    decoded = decode_pay_token(token)
    try:
        keys = provider_keyset(keyset)
    except VerificationError as exc:
        raise VerificationError("NOOTERRA_PAY_KEYSET_UNAVAILABLE", exc.message) from exc
    key = keys.get(decoded.kid)
    if key is None:
        raise VerificationError("NOOTERRA_PAY_UNKNOWN_KID", f"kid {decoded.kid!r} is not in the keyset")
    try:
        signature = b64url_decode(decoded.signature)
        payload_hash = canonical_hash(decoded.payload)
    except (VerificationError, CanonicalJsonError) as exc:
        raise VerificationError("NOOTERRA_PAY_SIGNATURE_INVALID", str(exc)) from exc
    if not verify_hash_signature(key.pem, payload_hash, signature):
        raise VerificationError("NOOTERRA_PAY_SIGNATURE_INVALID", "the Ed25519 signature does not verify")
    if not decoded.canonical:
        raise VerificationError("NOOTERRA_PAY_TOKEN_NOT_CANONICAL", "not base64url of the canonical envelope")
    exp = decoded.payload.get("exp")
    if not isinstance(exp, int) or isinstance(exp, bool) or now > exp:
        raise VerificationError("NOOTERRA_PAY_EXPIRED", f"exp {exp!r}, now {int(now)}")
    return decoded


def pay_token_offer_errors(
    payload: Mapping[str, Any], *, provider_id: str, amount_cents: int, currency: str
) -> list[str]:
    """The provider-kit offer checks a token payload fails (``aud``/``payeeProviderId``/amount/currency)."""
    errors = []
    if payload.get("aud") != provider_id:
        errors.append("NOOTERRA_PAY_AUDIENCE_MISMATCH")
    if payload.get("payeeProviderId") != provider_id:
        errors.append("NOOTERRA_PAY_PAYEE_MISMATCH")
    if payload.get("amountCents") != amount_cents:
        errors.append("NOOTERRA_PAY_AMOUNT_MISMATCH")
    if payload.get("currency") != currency:
        errors.append("NOOTERRA_PAY_CURRENCY_MISMATCH")
    return errors


# --- offers -----------------------------------------------------------------------------------


def parse_payment_required(raw: str) -> dict[str, Any]:
    """The offer an ``x-payment-required`` value carries: a JSON object, or ``k=v; k=v`` pairs.

    ``offer_unparseable`` when it is neither; ``X402_PAYMENT_REQUIRED_AMBIGUOUS_FIELDS`` when a key repeats.
    """
    text = raw.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text, object_pairs_hook=_no_duplicates)
        except ValueError as exc:
            if isinstance(exc, VerificationError):
                raise
            raise VerificationError("offer_unparseable", f"not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise VerificationError("offer_unparseable", "the JSON form is not an object")
        return value
    offer: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise VerificationError("offer_unparseable", f"malformed pair {part!r}")
        if key in offer:
            raise VerificationError("X402_PAYMENT_REQUIRED_AMBIGUOUS_FIELDS", f"{key!r} appears twice")
        offer[key] = value.strip()
    if not offer:
        raise VerificationError("offer_unparseable", "empty")
    return offer


def _no_duplicates(pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise VerificationError("X402_PAYMENT_REQUIRED_AMBIGUOUS_FIELDS", f"{key!r} appears twice")
        out[key] = value
    return out


def offer_amount(offer: Mapping[str, Any]) -> int | None:
    """The first positive safe integer among the amount keys (digit strings count), else None."""
    for key in AMOUNT_KEYS:
        value = offer.get(key)
        if isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
            value = int(value.strip())
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_SAFE_INTEGER:
            return value
    return None


# --- money ------------------------------------------------------------------------------------


def holdback_cents(release_cents: int, bps: int) -> int:
    """``floor(release * bps / 10000)``, and 0 when nothing is released."""
    if release_cents <= 0 or bps <= 0:
        return 0
    return release_cents * bps // 10_000


def settlement_split(amount_cents: int, bps: int, *, released: bool) -> tuple[int, int, int]:
    """The primary settlement of a gate as ``(released, refunded, holdback)``.

    Released in full (green): ``amount - holdback`` goes to the provider, the holdback is refunded and
    re-locked; refunded (red): nothing is released and nothing is held back.
    """
    if not released:
        return 0, amount_cents, 0
    held = holdback_cents(amount_cents, bps)
    return amount_cents - held, held, held


def key_id_shape_ok(key_id: Any) -> bool:
    """Whether ``key_id`` has the shape of an upstream key id (``key_`` + 24 hex)."""
    return isinstance(key_id, str) and bool(_KEY_ID.match(key_id))
