"""A provider quote signature re-verified the way upstream's receipt verifier does it.

Upstream's ``verifyToolProviderQuoteSignatureV1`` (``src/core/provider-quote-signature.js:153-170``) throws
(the verifier reports ``provider_quote_signature_parse_failed``, then ``..._crypto_invalid``) when the
signature is not a ``ToolProviderQuoteSignature.v1`` with ``algorithm: ed25519``, when the quote payload does
not rebuild as a ``ToolProviderQuotePayload.v1`` (``buildToolProviderQuotePayloadV1``, ``:72-127``), when
``payloadHash`` is not sha256 hex or ``signatureBase64`` is empty; it answers "does not verify" (only
``..._crypto_invalid``) when the key id, the payload hash or the Ed25519 signature disagree. `verify` gives the
same three outcomes, in upstream's order, so that a receipt upstream rejects is never passed here.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from conformance import x402
from conformance.canonical import CanonicalJsonError, canonical_hash

PAYLOAD_VERSION = "ToolProviderQuotePayload.v1"
SIGNATURE_VERSION = "ToolProviderQuoteSignature.v1"
_ID = re.compile(r"^[A-Za-z0-9:._/-]+$")
_CURRENCY = re.compile(r"^[A-Z][A-Z0-9_]{2,11}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MAX_SAFE = 2**53 - 1


class Malformed(ValueError):
    """What upstream's quote-signature code throws a TypeError for (reported as ``parse_failed``)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """``ok``; ``invalid`` (upstream returns false); ``malformed`` (upstream throws). ``reason`` says why."""

    status: Literal["ok", "invalid", "malformed"]
    reason: str
    payload_sha256: str | None = None


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Malformed(f"{name} must be a non-empty string")
    return value.strip()


def _iso(value: Any, name: str) -> str:
    text = _text(value, name)
    if _instant(text) is None:
        raise Malformed(f"{name} must be an ISO date-time")
    return text


def _instant(text: str) -> dt.datetime | None:
    return x402.parse_iso(text.replace("Z", "+00:00") if text.endswith("Z") else text)


def _optional_id(value: Any, name: str) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    out = _js_string(value).strip()
    if not _ID.match(out):
        raise Malformed(f"{name} must match ^[A-Za-z0-9:._/-]+$")
    if len(out) > 200:
        raise Malformed(f"{name} must be <= 200 chars")
    return out


def _js_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _positive_int(value: Any, name: str) -> int:
    number: float
    if isinstance(value, bool | int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip() or "0")
        except ValueError:
            number = math.nan
    else:
        number = math.nan
    if not math.isfinite(number) or number != int(number) or not 0 < number <= _MAX_SAFE:
        raise Malformed(f"{name} must be a positive safe integer")
    return int(number)


def _optional_sha(value: Any, name: str) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    out = str(value).strip().lower()
    if not _HEX64.match(out):
        raise Malformed(f"{name} must be sha256 hex")
    return out


def _flag(value: Any) -> bool:
    if value is True or value is False:
        return bool(value)
    if value is None:
        return False
    return _js_string(value).strip().lower() in ("1", "true", "yes", "on")


def payload_v1(quote: Mapping[str, Any]) -> dict[str, Any]:
    """The quote rebuilt as upstream's ``buildToolProviderQuotePayloadV1`` does; `Malformed` where it throws."""
    mode = _text(quote.get("requestBindingMode", "none"), "requestBindingMode").lower()
    if mode not in ("none", "strict"):
        raise Malformed("requestBindingMode must be none|strict")
    binding = _optional_sha(quote.get("requestBindingSha256"), "requestBindingSha256")
    if mode == "strict" and not binding:
        raise Malformed("requestBindingSha256 is required when requestBindingMode=strict")
    spend = _text(quote.get("spendAuthorizationMode", "optional"), "spendAuthorizationMode").lower()
    if spend not in ("optional", "required"):
        raise Malformed("spendAuthorizationMode must be optional|required")
    quote_id = _optional_id(quote.get("quoteId"), "quoteId")
    provider = _optional_id(quote.get("providerId"), "providerId")
    if provider is None:
        raise Malformed("providerId is required")
    tool = _optional_id(quote.get("toolId"), "toolId")
    if tool is None:
        raise Malformed("toolId is required")
    currency = _text(quote.get("currency"), "currency").upper()
    if not _CURRENCY.match(currency):
        raise Malformed("currency must match ^[A-Z][A-Z0-9_]{2,11}$")
    payload: dict[str, Any] = {
        "schemaVersion": PAYLOAD_VERSION,
        "providerId": provider,
        "toolId": tool,
        "amountCents": _positive_int(quote.get("amountCents"), "amountCents"),
        "currency": currency,
        "address": _text(quote.get("address"), "address"),
        "network": _text(quote.get("network"), "network"),
        "requestBindingMode": mode,
        "quoteRequired": _flag(quote.get("quoteRequired")),
        "spendAuthorizationMode": spend,
        "quotedAt": _iso(quote.get("quotedAt"), "quotedAt"),
        "expiresAt": _iso(quote.get("expiresAt"), "expiresAt"),
    }
    if binding:
        payload["requestBindingSha256"] = binding
    if quote_id:
        payload["quoteId"] = quote_id
    quoted, expires = _instant(payload["quotedAt"]), _instant(payload["expiresAt"])
    if quoted is None or expires is None or expires <= quoted:
        raise Malformed("expiresAt must be after quotedAt")
    return payload


def payload_sha256(quote: Mapping[str, Any]) -> str:
    """H(canonical rebuilt payload), as ``computeToolProviderQuotePayloadHashV1``; `Malformed` where it throws."""
    try:
        return canonical_hash(payload_v1(quote))
    except CanonicalJsonError as exc:
        raise Malformed(f"the quote cannot be hashed: {exc}") from exc


def verify(quote: Any, signature: Any, public_key_pem: Any) -> Outcome:
    """Re-verify ``signature`` over ``quote`` under ``public_key_pem``, in the order upstream checks."""
    try:
        if not isinstance(signature, Mapping):
            raise Malformed("signature must be an object")
        pem = _text(public_key_pem, "publicKeyPem")
        if signature.get("schemaVersion") != SIGNATURE_VERSION:
            raise Malformed(f"signature.schemaVersion must be {SIGNATURE_VERSION}")
        if _js_string(signature.get("algorithm") or "").lower() != "ed25519":
            raise Malformed(f"signature.algorithm must be ed25519 (it is {signature.get('algorithm')!r})")
        try:
            expected_id = x402.key_id_from_pem(pem)
        except x402.VerificationError as exc:
            raise Malformed(f"publicKeyPem: {exc.message}") from exc
        if _js_string(signature.get("keyId") or "").strip() != expected_id:
            return Outcome("invalid", f"keyId {signature.get('keyId')!r} is not the key's id {expected_id}")
        if not isinstance(quote, Mapping):
            raise Malformed("the quote payload is not an object")
        digest = payload_sha256(quote)
        claimed = _text(signature.get("payloadHash"), "signature.payloadHash").lower()
        if not _HEX64.match(claimed):
            raise Malformed("signature.payloadHash must be sha256 hex")
        if claimed != digest:
            return Outcome("invalid", f"payloadHash {claimed} is not H(quote) {digest}", digest)
        raw_b64 = _text(signature.get("signatureBase64"), "signature.signatureBase64")
    except Malformed as exc:
        return Outcome("malformed", str(exc))
    try:
        raw = x402.decode_base64(raw_b64)
    except x402.VerificationError:
        return Outcome("invalid", "signatureBase64 is not base64", digest)
    if not x402.verify_hash_signature(pem, digest, raw):
        return Outcome("invalid", "the Ed25519 signature does not verify", digest)
    return Outcome("ok", f"verifies under {expected_id}", digest)
