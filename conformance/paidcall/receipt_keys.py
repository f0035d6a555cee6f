"""x402.receipt.{provider_signature,key_evidence,quote_signature}: the provider's signatures in the receipt
verify under pinned keys, and the key evidence it embeds is consistent and bound."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from conformance import quotesig, x402
from conformance.errors import (
    Undetermined,
)
from conformance.paidcall.common import (
    Finding,
    evidence_ref,
    fails,
    judge,
    obj,
    passes,
    pinned_keys,
    receipt_of,
    response_hash,
)
from conformance.paidcall.evidence import (
    FIRST,
    PaidCallEvidence,
)


def _receipt_signature(receipt: Mapping[str, Any]) -> dict[str, Any] | None:
    """The receipt's provider signature, or one rebuilt from its ``provider:*`` evidence refs (as upstream's verifier does)."""
    sig = receipt.get("providerSignature")
    if isinstance(sig, dict):
        return sig
    refs = {
        k: evidence_ref(receipt, f"provider:{k}:")
        for k in ("key_id", "signed_at", "nonce", "payload_sha256", "sig_b64")
    }
    if not all(refs.values()):
        return None
    return {
        "schemaVersion": "ToolProviderSignature.v1",
        "algorithm": "ed25519",
        "keyId": refs["key_id"],
        "signedAt": refs["signed_at"],
        "nonce": refs["nonce"],
        "payloadHash": refs["payload_sha256"],
        "signatureBase64": refs["sig_b64"],
        "responseHash": obj(obj(receipt.get("bindings")).get("response")).get("sha256"),
    }


def receipt_provider_signature(e: PaidCallEvidence) -> list[Finding]:
    """The receipt's provider signature verifies under the profile's pinned provider key, over the response received."""
    receipt = receipt_of(e)
    signature = _receipt_signature(receipt)
    if signature is None:
        return [
            fails(
                "receipt.provider_signature",
                "provider_signature_material_missing",
                "the receipt carries no provider signature (nor provider:* evidence refs to rebuild one)",
                expected="ToolProviderSignature.v1",
            )
        ]
    pinned = pinned_keys(e)
    kid = str(signature.get("keyId", ""))
    response = response_hash(e)
    out: list[Finding] = []
    if kid not in pinned:
        out.append(
            fails(
                "receipt.signature_key",
                "provider_signature_key_not_pinned",
                f"the receipt's signature is by {kid!r}, not by a provider key the profile pins",
                observed=kid,
                expected=sorted(pinned),
            )
        )
    else:
        try:
            x402.verify_provider_signature(signature, pinned[kid].pem, response_hash=response)
            out.append(
                passes("receipt.signature", f"verifies under pinned key {kid} over {response}", observed=kid)
            )
        except x402.VerificationError as exc:
            out.append(
                fails(
                    "receipt.signature",
                    exc.code,
                    f"the receipt's provider signature does not verify under the pinned key: {exc.message}",
                    observed={"keyId": kid, "responseHash": signature.get("responseHash")},
                    expected={"responseHash": response},
                )
            )
    bound = obj(obj(receipt.get("bindings")).get("response")).get("sha256")
    out.append(
        judge(
            "receipt.signature_binding",
            str(signature.get("responseHash", "")).lower() == bound,
            "provider_signature_response_hash_mismatch",
            "the signed response hash is not the receipt's response binding",
            observed=signature.get("responseHash"),
            expected=bound,
            passed="the signature covers the bound response hash",
        )
    )
    embedded = obj(obj(receipt.get("verificationContext")).get("providerSigningKey")).get("publicKeyPem")
    if not (isinstance(embedded, str) and embedded.strip()):
        out.append(  # upstream's verifier cannot check the signature without it (x402-receipt-verifier.js:301-307)
            fails(
                "receipt.embedded_key",
                "provider_signature_key_missing",
                "the receipt embeds no provider key (verificationContext.providerSigningKey.publicKeyPem)",
                observed=None,
                expected=sorted(pinned),
            )
        )
    else:
        pins = {k.pem for k in pinned.values()}
        out.append(
            judge(
                "receipt.embedded_key",
                embedded.strip() in pins,
                "embedded_key_not_pinned",
                "the key the receipt embeds as the provider's is not a key the profile pins",
                observed=x402.key_id_from_pem(embedded),
                expected=sorted(pinned),
                passed="the embedded key is pinned",
            )
        )
    return out


def _key_evidence(prop: str, evidence: Any) -> list[Finding]:
    ev = obj(evidence)
    pem = ev.get("publicKeyPem")
    if ev.get("schemaVersion") != "VerificationKeyEvidence.v1" or not isinstance(pem, str):
        return [
            fails(
                prop,
                "key_evidence_invalid",
                "not a VerificationKeyEvidence.v1 with a publicKeyPem",
                observed=ev.get("schemaVersion"),
            )
        ]
    try:
        x = x402.jwk_x_from_pem(pem)
    except x402.VerificationError as exc:
        return [fails(prop, "key_evidence_invalid", f"publicKeyPem: {exc.message}")]
    return [
        judge(
            f"{prop}.keyId",
            ev.get("keyId") == x402.key_id_from_pem(pem),
            "key_evidence_key_id_mismatch",
            "keyId is not the key id of publicKeyPem",
            observed=ev.get("keyId"),
            expected=x402.key_id_from_pem(pem),
        ),
        judge(
            f"{prop}.jwk",
            ev.get("jwk") == {"crv": "Ed25519", "kty": "OKP", "x": x},
            "key_evidence_jwk_mismatch",
            "jwk is not publicKeyPem's",
            observed=ev.get("jwk"),
            expected={"crv": "Ed25519", "kty": "OKP", "x": x},
        ),
        judge(
            f"{prop}.thumbprint",
            ev.get("jwkThumbprintSha256") == x402.jwk_thumbprint(x),
            "key_evidence_thumbprint_mismatch",
            "jwkThumbprintSha256 is not H({crv,kty,x}) in hex",
            observed=ev.get("jwkThumbprintSha256"),
            expected=x402.jwk_thumbprint(x),
        ),
    ]


def receipt_key_evidence(e: PaidCallEvidence) -> list[Finding]:
    """The embedded VerificationKeyEvidence.v1 is self-consistent and its thumbprint and key id are the bound ones."""
    receipt = receipt_of(e)
    context = receipt.get("verificationContext")
    if not isinstance(context, dict) or context.get("schemaVersion") != "X402GateVerificationContext.v1":
        return [
            fails(
                "receipt.verification_context",
                "verification_context_missing",
                "the receipt has no X402GateVerificationContext.v1",
                observed=obj(context).get("schemaVersion"),
            )
        ]
    bindings = obj(receipt.get("bindings"))
    out: list[Finding] = []
    for name, binding in (
        ("providerSigningKey", "providerSig"),
        ("providerQuoteSigningKey", "providerQuoteSig"),
    ):
        evidence = context.get(name)
        if evidence is None:
            continue  # no key claimed; x402.receipt.provider_signature judges missing signature material
        out += _key_evidence(f"receipt.{name}", evidence)
        bound = obj(bindings.get(binding))
        thumb = bound.get("keyJwkThumbprintSha256")
        if thumb is not None:
            out.append(
                judge(
                    f"receipt.{binding}.thumbprint",
                    thumb == obj(evidence).get("jwkThumbprintSha256"),
                    "provider_sig_thumbprint_binding_mismatch",
                    f"bindings.{binding}.keyJwkThumbprintSha256 is not {name}'s thumbprint",
                    observed=thumb,
                    expected=obj(evidence).get("jwkThumbprintSha256"),
                )
            )
        kid = bound.get("providerKeyId")
        if kid is not None:
            out.append(
                judge(
                    f"receipt.{binding}.keyId",
                    kid == obj(evidence).get("keyId"),
                    "provider_sig_key_id_binding_mismatch",
                    f"bindings.{binding}.providerKeyId is not {name}'s keyId",
                    observed=kid,
                    expected=obj(evidence).get("keyId"),
                )
            )
    return out or [passes("receipt.key_evidence", "no provider key is embedded", None)]


def _quote_offered(e: PaidCallEvidence) -> bool:
    first = e.exchange(FIRST)
    return first is not None and bool(first.header("x-nooterra-provider-quote-signature"))


def receipt_quote_signature(e: PaidCallEvidence) -> list[Finding]:
    """The receipt's provider quote signature re-verifies as upstream's receipt verifier does, under a pinned key,
    and the quote hash and id the receipt binds are the quote's (src/core/x402-receipt-verifier.js:357-447)."""
    receipt = receipt_of(e)
    payload = receipt.get("providerQuotePayload")
    signature = receipt.get("providerQuoteSignature")
    context = obj(obj(receipt.get("verificationContext")).get("providerQuoteSigningKey"))
    pem = context.get("publicKeyPem")
    status = obj(obj(receipt.get("bindings")).get("providerQuoteSig"))
    material = {
        "payload": isinstance(payload, dict),
        "signature": isinstance(signature, dict),
        "publicKey": isinstance(pem, str) and bool(pem.strip()),
    }
    if not all(material.values()):
        needed = status.get("required") is True or status.get("verified") is True or _quote_offered(e)
        return [
            judge(
                "receipt.quote_material",
                not needed,
                "provider_quote_signature_material_missing",
                "the paid call was quoted, but the receipt lacks the quote payload, its signature or the quote key: "
                "the quote signature cannot be re-verified offline",
                observed=material,
                expected=dict.fromkeys(material, True),
                passed="no provider quote was made or bound: nothing to re-verify",
            )
        ]
    if not (isinstance(payload, dict) and isinstance(signature, dict) and isinstance(pem, str)):
        raise Undetermined("unreachable: the quote material was checked above")
    outcome = quotesig.verify(payload, signature, pem)
    out = [
        judge(
            "receipt.quote_signature_form",
            outcome.status != "malformed",
            "provider_quote_signature_parse_failed",
            f"the receipt's quote signature is malformed: {outcome.reason}",
            observed={k: signature.get(k) for k in ("schemaVersion", "algorithm", "keyId")},
            expected={"schemaVersion": quotesig.SIGNATURE_VERSION, "algorithm": "ed25519"},
            passed="a ToolProviderQuoteSignature.v1 (ed25519) over a well-formed ToolProviderQuotePayload.v1",
        ),
        judge(
            "receipt.quote_signature",
            outcome.status == "ok",
            "provider_quote_signature_crypto_invalid",
            f"the receipt's quote signature does not verify: {outcome.reason}",
            observed=signature.get("keyId"),
            passed=f"the quote signature {outcome.reason}",
        ),
    ]
    pinned = pinned_keys(e)
    pins = {k.pem.strip() for k in pinned.values()}
    out.append(
        judge(
            "receipt.quote_key_pinned",
            pem.strip() in pins and str(signature.get("keyId", "")) in pinned,
            "provider_quote_key_not_pinned",
            "the quote is signed, or its key embedded, by a key the profile does not pin",
            observed={"keyId": signature.get("keyId"), "embedded": _quote_key_id(pem)},
            expected=sorted(pinned),
            passed="the quote key is pinned",
        )
    )
    try:
        digest: str | None = quotesig.payload_sha256(payload)
    except quotesig.Malformed:
        digest = outcome.payload_sha256
    evidence_hash = evidence_ref(receipt, "provider_quote:payload_sha256:")
    evidence_id = evidence_ref(receipt, "provider_quote:quote_id:")
    quote_id = payload.get("quoteId")
    for prop, claimed, actual, code, what in (
        ("receipt.providerQuoteSig.quoteSha256", _lower(status.get("quoteSha256")), digest,
         "provider_quote_signature_hash_mismatch", "bindings.providerQuoteSig.quoteSha256"),
        ("receipt.quote_evidence_hash", _lower(evidence_hash), digest,
         "provider_quote_evidence_hash_mismatch", "the provider_quote:payload_sha256 evidence ref"),
        ("receipt.providerQuoteSig.quoteId", status.get("quoteId"), quote_id,
         "provider_quote_id_mismatch", "bindings.providerQuoteSig.quoteId"),
        ("receipt.quote_evidence_id", evidence_id, quote_id,
         "provider_quote_evidence_id_mismatch", "the provider_quote:quote_id evidence ref"),
    ):  # fmt: skip
        if claimed and actual:  # upstream compares only what both sides carry
            out.append(
                judge(
                    prop,
                    str(claimed) == str(actual),
                    code,
                    f"{what} is not the quote's",
                    observed=claimed,
                    expected=actual,
                    passed=f"{what} is the quote's",
                )
            )
    return out


def _lower(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) else None


def _quote_key_id(pem: str) -> str | None:
    with contextlib.suppress(x402.VerificationError):
        return x402.key_id_from_pem(pem)
    return None
