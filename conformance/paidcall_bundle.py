"""The artifact bundle of one paid call: every request and response, written so it can be verified offline.

Layout, under ``<out>/paid-call/<gateId>/`` (``no-gate-<time>`` when no gate was created)::

    manifest.json          GatesPaidCallBundle.v1: every other file with its sha256 and schema
    context.json           GatesPaidCallContext.v1: what the profile expected (URLs, pinned keys, holdback,
                           spend cap), why the suite did not pay or replay (if so), and the token facts
    http/NN-<step>.json    GatesHttpExchange.v1: one request and its response, in the order they were made
    offer.json             GatesX402Offer.v1: the offer headers of the first call, parsed, with the quote
    receipt.json           the X402ReceiptRecord.v1 as the API returned it (when there was exactly one)
    provider-keyset.json   the provider keyset as fetched from the pinned URL
    api-keyset.json        the API's NooterraPay keyset as fetched

Secrets never reach the files: request headers that carry credentials are masked, the NooterraPay
token's value is removed from the gate state, and every value the run was given as a secret is
scrubbed. `load` rebuilds the `PaidCallEvidence` from the files alone, after checking the manifest
(hashes, no missing or extra file), every file's schema, and that the convenience copies
(offer, receipt, keysets) say what the HTTP exchanges say; any problem is a `ConfigError` naming
the file.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from conformance import _schemas, x402
from conformance.canonical import canonical_hash, sha256_hex
from conformance.errors import ConfigError
from conformance.paidcall import (
    API_KEYSET,
    FIRST,
    PROVIDER_KEYSET,
    RECEIPTS,
    Exchange,
    PaidCallEvidence,
    TokenFacts,
)
from conformance.redact import Redactor

BUNDLE_VERSION = "GatesPaidCallBundle.v1"
CONTEXT_VERSION = "GatesPaidCallContext.v1"
EXCHANGE_VERSION = "GatesHttpExchange.v1"
OFFER_VERSION = "GatesX402Offer.v1"
MANIFEST = "manifest.json"
SUBDIR = "paid-call"
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "x-proxy-ops-token",
        "x-proxy-api-key",
        "x-payment",
        "cookie",
        "set-cookie",
        "proxy-authorization",
    }
)
REDACTED = "<redacted>"
SCHEMAS = {
    "context.json": "paid-call-context",
    "offer.json": "x402-offer",
    "receipt.json": "x402-receipt-record",
    "provider-keyset.json": "published-keyset",
    "api-keyset.json": "published-keyset",
}
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def directory_name(evidence: PaidCallEvidence) -> str:
    """``<gateId>``, or ``no-gate-<start time>`` when the gateway created no gate."""
    if evidence.gate_id:
        return _SAFE.sub("_", evidence.gate_id)[:120]
    return "no-gate-" + re.sub(r"[^0-9]", "", evidence.started_at)[:17]


# --- documents --------------------------------------------------------------------------------


def exchange_document(ex: Exchange) -> dict[str, Any]:
    """The GatesHttpExchange.v1 document of one exchange (body as UTF-8 text when it is, else base64)."""
    response: dict[str, Any] | None = None
    if ex.status is not None:
        try:
            text, encoding = ex.body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(ex.body).decode("ascii"), "base64"
        response = {
            "status": ex.status,
            "headers": [[k, v] for k, v in ex.headers],
            "bodyEncoding": encoding,
            "body": text,
            "bodySha256": sha256_hex(ex.body),
            "bodyBytes": len(ex.body),
        }
    return {
        "schemaVersion": EXCHANGE_VERSION,
        "step": ex.step,
        "at": ex.at,
        "request": {"method": ex.method, "url": ex.url, "headers": [[k, v] for k, v in ex.request_headers]},
        "response": response,
        "error": None if ex.error is None else {"code": ex.error_code or "probe_error", "message": ex.error},
        "redactions": list(ex.redactions),
    }


def exchange_from_document(doc: dict[str, Any], source: str) -> Exchange:
    """Inverse of `exchange_document`."""
    response = doc.get("response")
    body = b""
    if response is not None:
        if response["bodyEncoding"] == "utf-8":
            body = response["body"].encode("utf-8")
        else:
            try:
                body = base64.b64decode(response["body"], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ConfigError(f"the response body is not base64: {exc}", source=source) from exc
        if sha256_hex(body) != response["bodySha256"] or len(body) != response["bodyBytes"]:
            raise ConfigError("the response body does not match its bodySha256/bodyBytes", source=source)
    error = doc.get("error")
    return Exchange(
        step=doc["step"],
        method=doc["request"]["method"],
        url=doc["request"]["url"],
        at=doc["at"],
        request_headers=tuple((k, v) for k, v in doc["request"]["headers"]),
        status=None if response is None else response["status"],
        headers=() if response is None else tuple((k, v) for k, v in response["headers"]),
        body=body,
        error_code=None if error is None else error["code"],
        error=None if error is None else error["message"],
        redactions=tuple(doc.get("redactions") or ()),
    )


def _token_document(token: TokenFacts | None) -> dict[str, Any] | None:
    if token is None:
        return None
    return {
        "kid": token.kid,
        "payload": token.payload,
        "sha256": token.sha256,
        "canonical": token.canonical,
        "verification": {"ok": token.verified, "code": token.code, "message": token.message},
    }


def _token_from_document(doc: dict[str, Any] | None) -> TokenFacts | None:
    if doc is None:
        return None
    return TokenFacts(
        kid=doc["kid"],
        payload=doc["payload"],
        sha256=doc["sha256"],
        canonical=doc["canonical"],
        verified=doc["verification"]["ok"],
        code=doc["verification"]["code"],
        message=doc["verification"]["message"],
    )


def _exchange_path(index: int, step: str) -> str:
    return f"http/{index + 1:02d}-{step}.json"


def context_document(evidence: PaidCallEvidence) -> dict[str, Any]:
    """The GatesPaidCallContext.v1 document."""
    return {
        "schemaVersion": CONTEXT_VERSION,
        "name": evidence.name,
        "gatewayUrl": evidence.gateway_url,
        "path": evidence.path,
        "apiUrl": evidence.api_url,
        "upstreamUrl": evidence.upstream_url,
        "providerKeysetUrl": evidence.provider_keyset_url,
        "pinnedProviderKeyIds": list(evidence.pinned_key_ids),
        "holdbackBps": evidence.holdback_bps,
        "spendCapCents": evidence.spend_cap_cents,
        "tenant": evidence.tenant,
        "startedAt": evidence.started_at,
        "gateId": evidence.gate_id,
        "refused": evidence.refused,
        "replaySkipped": evidence.replay_skipped,
        "token": _token_document(evidence.token),
        "visibility": evidence.visibility,
        "exchanges": [_exchange_path(i, ex.step) for i, ex in enumerate(evidence.exchanges)],
    }


def offer_document(evidence: PaidCallEvidence) -> dict[str, Any] | None:
    """The GatesX402Offer.v1 document derived from the first call (None when it got no answer)."""
    first = evidence.exchange(FIRST)
    if first is None or first.status is None:
        return None
    raw = first.header("x-payment-required") or first.header("payment-required")
    parsed: dict[str, Any] | None = None
    error = None
    if raw is not None:
        try:
            parsed = x402.parse_payment_required(raw)
        except x402.VerificationError as exc:
            error = str(exc)
    body = first.json()

    def decoded(name: str) -> Any:
        value = first.header(name)
        if value is None:
            return None
        try:
            return json.loads(x402.b64url_decode(value))
        except (x402.VerificationError, ValueError, UnicodeDecodeError):
            return None

    return {
        "schemaVersion": OFFER_VERSION,
        "source": _exchange_path(list(evidence.exchanges).index(first), first.step),
        "status": first.status,
        "headers": {
            name: first.header(name)
            for name in (
                "x-payment-required",
                "payment-required",
                "x-nooterra-gate-id",
                "x-nooterra-payment-error",
            )
        },
        "offer": parsed,
        "parseError": error,
        "amountCents": None if parsed is None else x402.offer_amount(parsed),
        "bodyOffer": body.get("offer")
        if isinstance(body, dict) and isinstance(body.get("offer"), dict)
        else None,
        "quote": decoded("x-nooterra-provider-quote"),
        "quoteSignature": decoded("x-nooterra-provider-quote-signature"),
    }


def _json_of(evidence: PaidCallEvidence, step: str) -> Any:
    ex = evidence.exchange(step)
    return None if ex is None or ex.status != 200 else ex.json()


def derived_documents(evidence: PaidCallEvidence) -> dict[str, Any]:
    """The convenience copies (offer, receipt, keysets) the exchanges imply; absent ones are left out."""
    out: dict[str, Any] = {}
    offer = offer_document(evidence)
    if offer is not None:
        out["offer.json"] = offer
    receipts = _json_of(evidence, RECEIPTS)
    found = receipts.get("receipts") if isinstance(receipts, dict) else None
    if isinstance(found, list) and len(found) == 1 and isinstance(found[0], dict):
        out["receipt.json"] = found[0]
    for name, step in (("provider-keyset.json", PROVIDER_KEYSET), ("api-keyset.json", API_KEYSET)):
        body = _json_of(evidence, step)
        if isinstance(body, dict) and isinstance(body.get("keys"), list):
            out[name] = body
    return out


def documents(evidence: PaidCallEvidence) -> dict[str, tuple[str, Any]]:
    """Every file of the bundle but the manifest: relative path → (schema, JSON value)."""
    out: dict[str, tuple[str, Any]] = {"context.json": ("paid-call-context", context_document(evidence))}
    for i, ex in enumerate(evidence.exchanges):
        out[_exchange_path(i, ex.step)] = ("http-exchange", exchange_document(ex))
    for name, doc in derived_documents(evidence).items():
        out[name] = (SCHEMAS[name], doc)
    return out


# --- write ------------------------------------------------------------------------------------


def mask_headers(headers: dict[str, str]) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """Request headers with credential-bearing ones masked, and the names of those masked."""
    masked = tuple((k, REDACTED if k.lower() in SECRET_HEADERS and v else v) for k, v in headers.items())
    return masked, tuple(
        f"request.headers.{k.lower()}" for k, v in headers.items() if k.lower() in SECRET_HEADERS and v
    )


def _dump(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write(evidence: PaidCallEvidence, out: Path, redactor: Redactor) -> Path:
    """Write the bundle under ``out/paid-call/<name>/`` (replacing an earlier one of that name); return its path.

    Every document is scrubbed by ``redactor`` and validated against its schema before anything is written.
    """
    files: list[tuple[str, str, bytes]] = []
    for rel, (schema, doc) in documents(evidence).items():
        clean = redactor.scrub(doc)
        if clean != doc and schema == "http-exchange" and clean.get("response"):
            clean = _rehash(clean)
        _schemas.validate(clean, schema, source=rel)
        files.append((rel, schema, _dump(clean)))
    entries = [
        {"path": rel, "sha256": sha256_hex(data), "bytes": len(data), "schema": schema}
        for rel, schema, data in files
    ]
    manifest = {
        "schemaVersion": BUNDLE_VERSION,
        "name": evidence.name,
        "gateId": evidence.gate_id,
        "startedAt": evidence.started_at,
        "files": entries,
        "bundleSha256": canonical_hash(entries),
    }
    _schemas.validate(manifest, "paid-call-manifest", source=MANIFEST)
    final = out / SUBDIR / directory_name(evidence)
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".bundle-", dir=final.parent))
    try:
        for rel, _, data in files:
            (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
            (scratch / rel).write_bytes(data)
        (scratch / MANIFEST).write_bytes(_dump(manifest))
        if final.exists():
            shutil.rmtree(final)
        os.replace(scratch, final)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return final


def _rehash(doc: dict[str, Any]) -> dict[str, Any]:
    """A scrubbed exchange stores the scrubbed body: its digest and size follow, and the redaction is noted."""
    response = dict(doc["response"])
    body = (
        response["body"].encode("utf-8")
        if response["bodyEncoding"] == "utf-8"
        else base64.b64decode(response["body"])
    )
    response.update(bodySha256=sha256_hex(body), bodyBytes=len(body))
    return {**doc, "response": response, "redactions": [*doc["redactions"], "secret values scrubbed"]}


# --- load -------------------------------------------------------------------------------------


def _read_json(path: Path, source: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("missing", source=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", source=source) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not JSON: {exc}", source=source) from exc


def load(directory: Path) -> PaidCallEvidence:
    """Rebuild the evidence of a bundle directory; any missing, malformed or inconsistent file is a `ConfigError`."""
    if not directory.is_dir():
        raise ConfigError(
            "not a directory (expected a paid-call bundle such as <out>/paid-call/<gateId>)",
            source=str(directory),
        )
    manifest_path = directory / MANIFEST
    manifest = _read_json(manifest_path, str(manifest_path))
    _schemas.validate(manifest, "paid-call-manifest", source=str(manifest_path))
    if canonical_hash(manifest["files"]) != manifest["bundleSha256"]:
        raise ConfigError(
            "bundleSha256 does not match the file list (the manifest was edited)", source=str(manifest_path)
        )
    listed = {entry["path"]: entry for entry in manifest["files"]}
    present = {
        p.relative_to(directory).as_posix()
        for p in directory.rglob("*")
        if p.is_file() and p.name != MANIFEST
    }
    for rel in sorted(present - set(listed)):
        raise ConfigError(
            "not listed in manifest.json (the bundle was changed after it was written)",
            source=str(directory / rel),
        )
    docs: dict[str, Any] = {}
    for rel, entry in sorted(listed.items()):
        path = directory / rel
        if rel not in present:
            raise ConfigError("listed in manifest.json but missing", source=str(path))
        data = path.read_bytes()
        if sha256_hex(data) != entry["sha256"] or len(data) != entry["bytes"]:
            raise ConfigError(
                f"sha256 {sha256_hex(data)} is not the manifest's {entry['sha256']} (the file was edited)",
                source=str(path),
            )
        doc = _read_json(path, str(path))
        _schemas.validate(doc, entry["schema"], source=str(path))
        docs[rel] = doc
    if "context.json" not in docs:
        raise ConfigError(
            "listed in no manifest entry: every bundle has a context.json",
            source=str(directory / "context.json"),
        )
    ctx = docs["context.json"]
    exchanges = []
    for rel in ctx["exchanges"]:
        if rel not in docs:
            raise ConfigError(
                f"context.json names {rel}, which the bundle does not hold", source=str(directory / rel)
            )
        exchanges.append(exchange_from_document(docs[rel], str(directory / rel)))
    unused = sorted(r for r in docs if r.startswith("http/") and r not in ctx["exchanges"])
    if unused:
        raise ConfigError("an exchange file context.json does not name", source=str(directory / unused[0]))
    evidence = PaidCallEvidence(
        name=ctx["name"],
        gateway_url=ctx["gatewayUrl"],
        path=ctx["path"],
        api_url=ctx["apiUrl"],
        upstream_url=ctx["upstreamUrl"],
        provider_keyset_url=ctx["providerKeysetUrl"],
        pinned_key_ids=tuple(ctx["pinnedProviderKeyIds"]),
        holdback_bps=ctx["holdbackBps"],
        spend_cap_cents=ctx["spendCapCents"],
        tenant=ctx["tenant"],
        started_at=ctx["startedAt"],
        gate_id=ctx["gateId"],
        exchanges=tuple(exchanges),
        refused=ctx["refused"],
        replay_skipped=ctx["replaySkipped"],
        token=_token_from_document(ctx["token"]),
        visibility=ctx.get("visibility"),
    )
    if manifest["gateId"] != evidence.gate_id:
        raise ConfigError(
            f"the manifest's gateId {manifest['gateId']!r} is not context.json's", source=str(manifest_path)
        )
    expected = derived_documents(evidence)
    for name in SCHEMAS:
        if name == "context.json":
            continue
        if (name in docs) != (name in expected) or (
            name in docs and _same(docs[name], expected[name]) is False
        ):
            raise ConfigError(
                "does not say what the HTTP exchanges under http/ say (one of them was edited)",
                source=str(directory / name),
            )
    return evidence


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
