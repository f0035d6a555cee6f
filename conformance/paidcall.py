"""One paid tool call through an x402 gateway, as evidence, and the properties it must have.

`PaidCallEvidence` is everything the suite sent and received for one paid call: the first call
(402 with the offer and a gate id), the paid retry (200 with the settlement headers), the provider's
keyset, the API's NooterraPay keyset, the gate state, the receipts of the run, and the replay audit
(the settled gate id replayed once, gate state and receipts fetched again, the receipt re-fetched by
id). It is plain data -- the probe builds it live, the bundle loader rebuilds it from files -- and
the properties below are pure functions of it, so `gates run` and `gates verify-receipt` reach the
same verdicts. Each check id maps to one evaluator returning `Finding` values; an evaluator that
lacks a prerequisite raises `Undetermined` (the check errors) or `SpendNotAllowed` (the run did not
allow the spend), never a pass.

Nothing is taken on the operator's word: hashes and signatures are recomputed (`conformance.x402`),
the provider's signatures are checked under the keys pinned in the profile rather than the key the
receipt embeds, and the receipt's request/response bindings are compared with what the suite itself
sent and received. The one input the bundle cannot hold is the NooterraPay token (a payment
credential): its signature is verified live and the result recorded; offline, the token's recorded
claims and hash bindings are checked again and its signature is reported as not repeatable.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from conformance import quotesig, x402
from conformance.canonical import CanonicalJsonError, canonical_hash
from conformance.errors import (
    ProbeError,
    ProbeProtocolError,
    ProbeResponseTooLarge,
    ProbeTimeout,
    ProbeTlsError,
    ProbeUnreachable,
    SpendNotAllowed,
    Undetermined,
)

FIRST, PAID, PROVIDER_KEYSET, API_KEYSET = "first-call", "paid-call", "provider-keyset", "api-keyset"
GATE, RECEIPTS, REPLAY = "gate", "receipts", "replay"
GATE_AFTER, RECEIPTS_AFTER, RECEIPT_BY_ID = "gate-after-replay", "receipts-after-replay", "receipt-by-id"
STEPS = (
    FIRST,
    PROVIDER_KEYSET,
    API_KEYSET,
    PAID,
    GATE,
    RECEIPTS,
    REPLAY,
    GATE_AFTER,
    RECEIPTS_AFTER,
    RECEIPT_BY_ID,
)
RECEIPT_VERSION = "X402ReceiptRecord.v1"
SETTLEMENT_METADATA = (
    "x-nooterra-settlement-status",
    "x-nooterra-verification-status",
    "x-nooterra-policy-decision",
    "x-nooterra-policy-hash",
    "x-nooterra-decision-id",
)
SIGNATURE_HEADERS = ("key-id", "signed-at", "nonce", "response-sha256", "signature")
_ERRORS: dict[str, type[ProbeError]] = {
    "probe_unreachable": ProbeUnreachable,
    "probe_timeout": ProbeTimeout,
    "probe_protocol_error": ProbeProtocolError,
    "probe_response_too_large": ProbeResponseTooLarge,
    "probe_tls_error": ProbeTlsError,
}

Status = Literal["pass", "fail", "skip"]


# --- evidence ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Exchange:
    """One HTTP request the suite made and what came back (or why nothing did)."""

    step: str
    method: str
    url: str
    at: str  # when the request was sent (ISO 8601, UTC, milliseconds)
    request_headers: tuple[tuple[str, str], ...] = ()
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    error_code: str | None = None  # a ProbeError reason code when nothing usable came back
    error: str | None = None
    redactions: tuple[str, ...] = ()

    def header(self, name: str) -> str | None:
        """First value of a response header (case-insensitive)."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    @property
    def content_type(self) -> str | None:
        """The response's Content-Type."""
        return self.header("content-type")

    def json(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None

    def preview(self, limit: int = 160) -> str:
        """The body as text, cut for messages."""
        text = self.body.decode("utf-8", errors="replace")
        return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenFacts:
    """The gate's NooterraPay token as decoded at capture, and the live verification of its signature."""

    kid: str
    payload: dict[str, Any]
    sha256: str
    canonical: bool
    verified: bool
    code: str | None
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PaidCallEvidence:
    """Everything one paid call produced, with the profile's expectations it is judged against."""

    name: str
    gateway_url: str
    path: str
    api_url: str
    upstream_url: str
    provider_keyset_url: str
    pinned_key_ids: tuple[str, ...]
    holdback_bps: int
    spend_cap_cents: int
    tenant: str
    started_at: str
    gate_id: str | None
    exchanges: tuple[Exchange, ...]
    refused: dict[str, str] | None = None  # why the suite did not pay: {code, message}
    replay_skipped: dict[str, str] | None = None  # why the replay audit was not run: {code, message}
    token: TokenFacts | None = None
    # step -> {attempts, waitedMs, budgetMs, visible}: how long a record the API had just written took to show
    visibility: dict[str, dict[str, Any]] | None = None
    token_value: str | None = field(
        default=None, repr=False, compare=False
    )  # held in memory only, never written

    @property
    def upstream_host(self) -> str:
        """The host (with port) the gateway calls the provider on: the request-binding host."""
        return urlsplit(self.upstream_url).netloc

    @property
    def run_id(self) -> str:
        """``x402_<gateId>``."""
        return f"x402_{self.gate_id}"

    def exchange(self, step: str) -> Exchange | None:
        """The exchange of ``step``, if it was made."""
        return next((x for x in self.exchanges if x.step == step), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One property of the paid call: whether it holds, its failure code, and what was compared."""

    prop: str
    status: Status
    message: str
    code: str | None = None
    observed: Any = None
    expected: Any = None

    @property
    def ok(self) -> bool:
        """Not a failure (a skipped property is not a failure)."""
        return self.status != "fail"


def _pass(prop: str, message: str, observed: Any = None, expected: Any = None) -> Finding:
    return Finding(prop=prop, status="pass", message=message, observed=observed, expected=expected)


def _fail(prop: str, code: str, message: str, observed: Any = None, expected: Any = None) -> Finding:
    return Finding(prop=prop, status="fail", code=code, message=message, observed=observed, expected=expected)


def _check(
    prop: str,
    ok: bool,
    code: str,
    message: str,
    *,
    observed: Any = None,
    expected: Any = None,
    passed: str = "",
) -> Finding:
    if ok:
        return _pass(prop, passed or message, observed, expected)
    return _fail(prop, code, message, observed, expected)


# --- prerequisites ----------------------------------------------------------------------------


def _need(e: PaidCallEvidence, step: str, why: str) -> Exchange:
    ex = e.exchange(step)
    if ex is None:
        raise Undetermined(f"no {step} exchange was made: {why}")
    if ex.status is None:
        cls = _ERRORS.get(ex.error_code or "", Undetermined)
        raise cls(f"{ex.method} {ex.url}: {ex.error or 'no answer'}")
    return ex


def _first(e: PaidCallEvidence) -> Exchange:
    return _need(e, FIRST, "the first call to the gateway was not made")


def _offer_402(e: PaidCallEvidence) -> Exchange:
    first = _first(e)
    if first.status != 402:
        raise Undetermined(
            f"the first call answered {first.status}, not a 402 offer; see x402.offer.payment_required"
        )
    return first


@dataclass(frozen=True, slots=True, kw_only=True)
class Offer:
    """The offer of the 402, parsed."""

    fields: dict[str, Any]
    amount: int
    currency: str
    provider_id: str
    tool_id: str | None
    request_binding_mode: str


def _raw_offer(first: Exchange) -> str | None:
    return first.header("x-payment-required") or first.header("payment-required")


def offer_of(e: PaidCallEvidence) -> Offer:
    """The parsed offer of the first call; `Undetermined` when there is none (see x402.offer.payment_required)."""
    first = _offer_402(e)
    raw = _raw_offer(first)
    if raw is None:
        raise Undetermined("the 402 carries no x-payment-required offer; see x402.offer.payment_required")
    try:
        fields = x402.parse_payment_required(raw)
    except x402.VerificationError as exc:
        raise Undetermined(f"the offer cannot be parsed ({exc}); see x402.offer.payment_required") from exc
    amount = x402.offer_amount(fields)
    provider = fields.get("providerId")
    if amount is None or not isinstance(provider, str) or not provider:
        raise Undetermined("the offer names no amount or provider; see x402.offer.payment_required")
    return Offer(
        fields=fields,
        amount=amount,
        currency=str(fields.get("currency") or fields.get("ccy") or "USD"),
        provider_id=provider,
        tool_id=str(fields["toolId"]) if fields.get("toolId") else None,
        request_binding_mode=str(fields.get("requestBindingMode") or "none"),
    )


def _paid(e: PaidCallEvidence) -> Exchange:
    _first(e)  # a first call that got no answer is the reason, with its own error
    if e.refused is not None:
        raise Undetermined(f"the suite did not pay: {e.refused['message']}")
    return _need(e, PAID, "the paid retry was not made")


def _paid_2xx(e: PaidCallEvidence) -> Exchange:
    paid = _paid(e)
    if not 200 <= (paid.status or 0) < 300:
        raise Undetermined(f"the paid retry answered {paid.status}; see x402.paid.settled")
    return paid


def _json_body(e: PaidCallEvidence, step: str, why: str) -> Any:
    ex = _need(e, step, why)
    if ex.status != 200:
        hint = " (does the profile's ops token have ops_read?)" if ex.status in (401, 403) else ""
        raise Undetermined(f"{ex.method} {ex.url} answered {ex.status}{hint}: {ex.preview()}")
    body = ex.json()
    if body is None:
        raise Undetermined(f"{ex.method} {ex.url} did not answer JSON: {ex.preview()}")
    return body


def response_hash(e: PaidCallEvidence) -> str:
    """The hash of the paid response as the suite computes it (canonical JSON for JSON bodies, else raw bytes)."""
    paid = _paid_2xx(e)
    return x402.response_sha256(paid.body, paid.content_type)


def provider_keys(e: PaidCallEvidence) -> dict[str, x402.KeysetKey]:
    """The provider's published keys (from the keyset URL the profile pins), by kid."""
    body = _json_body(e, PROVIDER_KEYSET, "the provider keyset was not fetched")
    try:
        return x402.provider_keyset(body)
    except x402.VerificationError as exc:
        raise Undetermined(f"the provider keyset at {e.provider_keyset_url} is unusable: {exc}") from exc


def pinned_keys(e: PaidCallEvidence) -> dict[str, x402.KeysetKey]:
    """The provider keys the profile trusts: the pinned key ids whose published material hashes to that id
    (every published key whose material matches its kid when no id is pinned)."""
    keys = provider_keys(e)
    wanted = e.pinned_key_ids or tuple(keys)
    return {kid: keys[kid] for kid in wanted if kid in keys and keys[kid].fingerprint == kid}


def api_keyset(e: PaidCallEvidence) -> Any:
    """The API's published NooterraPay keyset document."""
    return _json_body(e, API_KEYSET, "the API keyset was not fetched")


def gate_state(e: PaidCallEvidence, step: str = GATE) -> dict[str, Any]:
    """``GET /x402/gate/<gateId>`` as answered: ``{gate, settlement, holdbackSettlement}``."""
    _paid(e)
    body = _json_body(e, step, "the gate state was not fetched")
    if not isinstance(body, dict) or not isinstance(body.get("gate"), dict):
        raise Undetermined(f"the gate state of {e.gate_id} is not an object with a gate")
    return body


def receipts_of(e: PaidCallEvidence, step: str = RECEIPTS) -> list[Any]:
    """The receipts ``GET /x402/receipts?runId=x402_<gateId>`` answered."""
    _paid(e)
    body = _json_body(e, step, "the receipts were not fetched")
    found = body.get("receipts") if isinstance(body, dict) else None
    if not isinstance(found, list):
        raise Undetermined(f"the receipts answer of run {e.run_id} has no receipts array")
    return found


def receipt_of(e: PaidCallEvidence) -> dict[str, Any]:
    """The run's one X402ReceiptRecord.v1 (see x402.receipt.present)."""
    found = receipts_of(e)
    if len(found) != 1 or not isinstance(found[0], dict):
        raise Undetermined(
            f"run {e.run_id} has {len(found)} receipt(s), not exactly one; see x402.receipt.present"
        )
    receipt: dict[str, Any] = found[0]
    return receipt


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _evidence_ref(receipt: Mapping[str, Any], prefix: str) -> str | None:
    refs = receipt.get("evidenceRefs")
    if not isinstance(refs, list):
        return None
    return next((r[len(prefix) :] for r in refs if isinstance(r, str) and r.startswith(prefix)), None)


def _int(value: str | None) -> int | None:
    if value is None or not value.strip().lstrip("-").isdigit():
        return None
    return int(value.strip())


def _at(ex: Exchange) -> float:
    parsed = x402.parse_iso(ex.at)
    if parsed is None:
        raise Undetermined(f"the {ex.step} exchange has no valid timestamp ({ex.at!r})")
    return parsed.timestamp()


def _canon(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


# --- x402.offer.* -----------------------------------------------------------------------------


def offer_payment_required(e: PaidCallEvidence) -> list[Finding]:
    """The first call answers 402 with a parseable offer (either form), an amount, a provider and the payment error."""
    first = _first(e)
    out = [
        _check(
            "offer.status",
            first.status == 402,
            "offer_status_not_402",
            f"the first call to {e.path} answered {first.status}, expected 402 Payment Required",
            observed=first.status,
            expected=402,
            passed="the first call answered 402",
        )
    ]
    raw = _raw_offer(first)
    out.append(
        _check(
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
                _fail(
                    "offer.parse",
                    exc.code if exc.code.isupper() else "offer_unparseable",
                    f"the offer {raw!r} cannot be parsed: {exc.message}",
                    raw,
                )
            )
        else:
            amount = x402.offer_amount(fields)
            out.append(
                _check(
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
                _check(
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
        _check(
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
    out = {"amount": _canon(x402.offer_amount(fields))}
    out.update({k: _canon(fields.get(k)) for k in _COMPARED if k in fields})
    return out


def offer_headers_agree(e: PaidCallEvidence) -> list[Finding]:
    """Both offer headers are present and carry the same offer, which the JSON body's offer repeats."""
    first = _offer_402(e)
    legacy, standard = first.header("x-payment-required"), first.header("payment-required")
    out = [
        _check(
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
                _fail(
                    f"offer.parse[{name}]",
                    "offer_unparseable",
                    f"{name} cannot be parsed: {exc.message}",
                    raw,
                )
            )
    if len(parsed) == 2:
        a, b = parsed["x-payment-required"], parsed["payment-required"]
        out.append(
            _check(
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
            _check(
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
    first = _offer_402(e)
    gate = first.header("x-nooterra-gate-id")
    if not gate:
        return [
            _fail(
                "offer.gate_id",
                "gate_id_missing",
                "the gateway relayed the 402 without x-nooterra-gate-id: no hold was created, nothing can be paid",
                observed=dict(first.headers),
                expected="x-nooterra-gate-id: x402gate_...",
            )
        ]
    well_formed = len(gate) <= 200 and gate.isprintable() and " " not in gate
    return [
        _check(
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
    return _at(paid if paid is not None else _first(e))


def offer_quote_valid(e: PaidCallEvidence) -> list[Finding]:
    """The 402 carries a provider quote signed by a published provider key, bound to the offer and not expired."""
    first = _offer_402(e)
    offer = offer_of(e)
    quote_raw = first.header("x-nooterra-provider-quote")
    sig_raw = first.header("x-nooterra-provider-quote-signature")
    if not quote_raw or not sig_raw:
        return [
            _fail(
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
        return [_fail("quote.decode", "quote_invalid", f"the quote headers are not base64url JSON: {exc}")]
    if not isinstance(quote, dict) or not isinstance(signature, dict):
        return [_fail("quote.decode", "quote_invalid", "the quote or its signature is not a JSON object")]
    keys = provider_keys(e)
    kid = str(signature.get("keyId", ""))
    out: list[Finding] = []
    if kid not in keys:
        out.append(
            _fail(
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
            out.append(_pass("quote.signature", f"the quote signature verifies under {kid}"))
        except x402.VerificationError as exc:
            out.append(
                _fail("quote.signature", exc.code, f"the quote signature does not verify: {exc.message}", kid)
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
        _check(
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
            _fail(
                "quote.window",
                "quote_invalid",
                "the quote's quotedAt/expiresAt are not an ISO 8601 window",
                observed={"quotedAt": quote.get("quotedAt"), "expiresAt": quote.get("expiresAt")},
            )
        )
    else:
        used = _quote_time(e)
        out.append(
            _check(
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
        _check(
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


# --- x402.paid.* ------------------------------------------------------------------------------


def paid_settled(e: PaidCallEvidence) -> list[Finding]:
    """The paid retry answers 2xx for this gate with non-empty settlement metadata (the paid-tool contract)."""
    paid = _paid(e)
    status = paid.status or 0
    out = [
        _check(
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
        _check(
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
            _check(
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
            _check(
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
        _check(
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
    paid = _paid_2xx(e)
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
        _check(
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
    paid = _paid_2xx(e)
    computed = response_hash(e)
    header = paid.header("x-nooterra-response-sha256")
    if not header:
        return [
            _fail(
                "paid.response_sha256",
                "response_sha256_missing",
                "the paid response carries no x-nooterra-response-sha256",
                expected=computed,
            )
        ]
    return [
        _check(
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
    paid = _paid_2xx(e)
    missing = [
        f"x-nooterra-provider-{h}" for h in SIGNATURE_HEADERS if not paid.header(f"x-nooterra-provider-{h}")
    ]
    if missing:
        return [
            _fail(
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
            _fail(
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
            _fail(
                "paid.provider_signature",
                exc.code,
                f"the provider signature does not vouch for this response: {exc.message}",
                observed={"keyId": kid, "responseHash": signature["responseHash"]},
                expected={"responseHash": computed},
            )
        ]
    return [_pass("paid.provider_signature", f"signed by {kid} over {computed}", observed=kid)]


def paid_provider_key_pinned(e: PaidCallEvidence) -> list[Finding]:
    """The keys that signed the quote and the response are the provider keys the profile pins."""
    paid = _paid_2xx(e)
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
        _check(
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
            _check(
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
    paid = _paid_2xx(e)
    status = paid.header("x-nooterra-settlement-status")
    released, refunded = (_int(paid.header(f"x-nooterra-{k}-amount-cents")) for k in ("released", "refunded"))
    if not status or released is None or refunded is None:
        raise Undetermined("the paid response lacks the settlement status or amounts; see x402.paid.settled")
    if status not in ("released", "refunded"):
        return [
            _fail(
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
        _check(
            "paid.sum",
            released + refunded == offer.amount,
            "amounts_do_not_sum",
            f"released {released} + refunded {refunded} != the offer's {offer.amount} cents",
            observed=released + refunded,
            expected=offer.amount,
            passed=f"released + refunded = {offer.amount}",
        ),
        _check(
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
        _int(paid.header("x-nooterra-holdback-amount-cents")),
        paid.header("x-nooterra-holdback-status"),
    )
    if hold:
        ok = held == hold and held_status in ("held", "released")
        out.append(
            _check(
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
            _fail(
                "paid.holdback",
                "holdback_mismatch",
                f"a holdback of {held} is reported where none is due",
                observed=held,
                expected=0,
            )
        )
    return out


# --- x402.receipt.* ---------------------------------------------------------------------------


def receipt_present(e: PaidCallEvidence) -> list[Finding]:
    """Exactly one X402ReceiptRecord.v1 is stored for the run ``x402_<gateId>``."""
    found = receipts_of(e)
    seen = (e.visibility or {}).get(RECEIPTS)
    waited = (
        f" ({seen['attempts']} reads over {seen['waitedMs']} ms, budget {seen['budgetMs']} ms)"
        if seen
        else ""
    )
    if not found:
        return [
            _fail(
                "receipt.count",
                "receipt_missing",
                f"no receipt is stored for run {e.run_id}{waited}",
                observed={"count": 0, "visibility": seen},
                expected=1,
            )
        ]
    out = [
        _check(
            "receipt.count",
            len(found) == 1,
            "receipt_duplicated",
            f"{len(found)} receipts are stored for run {e.run_id}",
            observed={"count": len(found), "visibility": seen},
            expected=1,
            passed=f"one receipt for run {e.run_id}{waited}",
        )
    ]
    for i, r in enumerate(found):
        record = _obj(r)
        out.append(
            _check(
                f"receipt[{i}].schema",
                record.get("schemaVersion") == RECEIPT_VERSION,
                "receipt_schema_invalid",
                f"receipt {i} has schemaVersion {record.get('schemaVersion')!r}",
                observed=record.get("schemaVersion"),
                expected=RECEIPT_VERSION,
            )
        )
        out.append(
            _check(
                f"receipt[{i}].run",
                record.get("runId") == e.run_id,
                "receipt_run_mismatch",
                f"receipt {i} belongs to run {record.get('runId')!r}, not {e.run_id}",
                observed=record.get("runId"),
                expected=e.run_id,
            )
        )
    return out


def receipt_identity(e: PaidCallEvidence) -> list[Finding]:
    """The record's ids and states agree with the gate, the offer and the settlement receipt it embeds."""
    receipt = receipt_of(e)
    offer = offer_of(e)
    settlement, decision = _obj(receipt.get("settlementReceipt")), _obj(receipt.get("decisionRecord"))
    pairs = [
        ("receiptId", receipt.get("receiptId"), settlement.get("receiptId"), "receipt_id_mismatch"),
        ("gateId", receipt.get("gateId"), e.gate_id, "receipt_gate_mismatch"),
        ("runId", receipt.get("runId"), e.run_id, "receipt_run_mismatch"),
        ("tenantId", receipt.get("tenantId"), e.tenant, "receipt_tenant_mismatch"),
        ("providerId", receipt.get("providerId"), offer.provider_id, "receipt_provider_mismatch"),
        (
            "settlementState",
            receipt.get("settlementState"),
            settlement.get("status"),
            "receipt_state_inconsistent",
        ),
        (
            "verificationStatus",
            receipt.get("verificationStatus"),
            decision.get("verificationStatus"),
            "receipt_state_inconsistent",
        ),
    ]
    if offer.tool_id is not None:
        pairs.append(("toolId", receipt.get("toolId"), offer.tool_id, "receipt_tool_mismatch"))
    gate = e.exchange(GATE)
    body = gate.json() if gate is not None and gate.status == 200 else None
    if isinstance(body, dict) and isinstance(body.get("gate"), dict):
        pairs.append(
            (
                "payerAgentId",
                receipt.get("payerAgentId"),
                body["gate"].get("payerAgentId"),
                "receipt_payer_mismatch",
            )
        )
    return [
        _check(
            f"receipt.{name}",
            got == want and got is not None,
            code,
            f"the receipt's {name} is {got!r}, expected {want!r}",
            observed=got,
            expected=want,
            passed=f"{name} {got}",
        )
        for name, got, want, code in pairs
    ]


_HASH_CODES = frozenset(
    {
        "decision_record_hash_invalid",
        "decision_record_hash_mismatch",
        "settlement_receipt_hash_invalid",
        "settlement_receipt_hash_mismatch",
        "decision_record_missing",
        "settlement_receipt_missing",
    }
)


def _recomputed(record: Mapping[str, Any], fn: Callable[[Mapping[str, Any]], str]) -> str | None:
    try:
        return fn(record)
    except CanonicalJsonError:
        return None


def receipt_kernel_hashes(e: PaidCallEvidence) -> list[Finding]:
    """decisionHash and receiptHash recompute from the records they seal (SettlementKernel.v1)."""
    receipt = receipt_of(e)
    decision, settlement = receipt.get("decisionRecord"), receipt.get("settlementReceipt")
    errors = [c for c in x402.kernel_errors(decision, settlement) if c in _HASH_CODES]
    observed = {
        "decisionHash": _obj(decision).get("decisionHash"),
        "receiptHash": _obj(settlement).get("receiptHash"),
    }
    expected = {
        "decisionHash": _recomputed(_obj(decision), x402.decision_hash),
        "receiptHash": _recomputed(_obj(settlement), x402.receipt_hash),
    }
    if not errors:
        return [_pass("receipt.kernel_hashes", "decisionHash and receiptHash recompute", observed, expected)]
    return [
        _fail(
            "receipt.kernel_hashes",
            code,
            f"{code}: the stored hash does not seal the record's content",
            observed=observed,
            expected=expected,
        )
        for code in errors
    ]


def receipt_kernel_invariants(e: PaidCallEvidence) -> list[Finding]:
    """The receipt binds the decision (decisionRef), both name the run and settlement, and time runs forward."""
    receipt = receipt_of(e)
    settlement_id = None
    gate = e.exchange(GATE)
    body = gate.json() if gate is not None and gate.status == 200 else None
    if isinstance(body, dict) and isinstance(body.get("settlement"), dict):
        settlement_id = body["settlement"].get("settlementId")
    errors = [
        c
        for c in x402.kernel_errors(
            receipt.get("decisionRecord"),
            receipt.get("settlementReceipt"),
            run_id=e.run_id,
            settlement_id=settlement_id,
        )
        if c not in _HASH_CODES
    ]
    decision, settlement = _obj(receipt.get("decisionRecord")), _obj(receipt.get("settlementReceipt"))
    observed = {
        "decisionRef": settlement.get("decisionRef"),
        "decision": {
            k: decision.get(k)
            for k in ("decisionId", "decisionHash", "runId", "settlementId", "decidedAt", "policyHashUsed")
        },
        "receipt": {k: settlement.get(k) for k in ("runId", "settlementId", "createdAt", "settledAt")},
    }
    if not errors:
        return [
            _pass(
                "receipt.kernel_invariants",
                "the receipt binds the decision; run, settlement and time agree",
                observed,
            )
        ]
    return [
        _fail(
            "receipt.kernel_invariants",
            code,
            f"SettlementKernel.v1: {code}",
            observed=observed,
            expected={"run": e.run_id, "settlementId": settlement_id},
        )
        for code in errors
    ]


def _binding(prop: str, kind: str, what: str, got: Mapping[str, Any], want: Any, passed: str) -> Finding:
    """One bound value, given as an evidence ref and/or a binding field: absent and different are two findings.

    A receipt may carry a value in either place: upstream's API fills ``bindings.response.status`` only
    from a ``responseStatus`` its gateway never sends (``src/api/app.js:57599-57604``), while the
    gateway's evidence refs carry ``http:status:`` (``services/x402-gateway/src/server.js:974``). So
    one place suffices; none is an absent binding, a differing one a mismatch.
    """
    present = {k: v for k, v in got.items() if v is not None}
    if not present:
        return _fail(prop, f"{kind}_binding_absent", f"{what}: the receipt binds none (no evidence ref, no binding)",
                     observed=dict(got), expected=want)  # fmt: skip
    wrong = {k: v for k, v in present.items() if v != want}
    if wrong:
        return _fail(prop, f"{kind}_binding_mismatch",
                     f"{what}: " + ", ".join(f"{k} {v}" for k, v in wrong.items()) + f", expected {want}",
                     observed=dict(got), expected=want)  # fmt: skip
    absent = sorted(k for k in got if k not in present)
    return _pass(prop, passed + (f" (no {', '.join(absent)})" if absent else ""), dict(got), want)


def receipt_http_bindings(e: PaidCallEvidence) -> list[Finding]:
    """The receipt binds the request the suite sent and the response it received (hashes and status)."""
    receipt = receipt_of(e)
    paid = _paid_2xx(e)
    request = x402.request_binding_sha256("GET", e.upstream_host, e.path)
    response = response_hash(e)
    bindings = _obj(receipt.get("bindings"))
    decision_bindings = _obj(_obj(receipt.get("decisionRecord")).get("bindings"))
    out = []
    for label, source in (("record", bindings), ("decisionRecord", decision_bindings)):
        if label == "decisionRecord" and not source:
            continue  # the decision record need not repeat the bindings
        got_req = {
            "evidenceRef": _evidence_ref(receipt, "http:request_sha256:"),
            "binding": _obj(source.get("request")).get("sha256"),
        }
        out.append(
            _binding(
                f"receipt.{label}.request",
                "request_hash",
                f"the {label}'s request hash for GET {e.upstream_host}{e.path} as the suite sent it",
                got_req,
                request,
                f"request {request}",
            )
        )
        got_resp = {
            "evidenceRef": _evidence_ref(receipt, "http:response_sha256:"),
            "binding": _obj(source.get("response")).get("sha256"),
        }
        out.append(
            _binding(
                f"receipt.{label}.response",
                "response_hash",
                f"the {label}'s hash of the body the suite received",
                got_resp,
                response,
                f"response {response}",
            )
        )
        got_status = {
            "evidenceRef": _int(_evidence_ref(receipt, "http:status:")),
            "binding": _obj(source.get("response")).get("status"),
        }
        out.append(
            _binding(
                f"receipt.{label}.status",
                "response_status",
                f"the {label}'s response status (the suite received {paid.status})",
                got_status,
                paid.status,
                f"status {paid.status}",
            )
        )
    return out


def _receipt_signature(receipt: Mapping[str, Any]) -> dict[str, Any] | None:
    """The receipt's provider signature, or one rebuilt from its ``provider:*`` evidence refs (as upstream's verifier does)."""
    sig = receipt.get("providerSignature")
    if isinstance(sig, dict):
        return sig
    refs = {
        k: _evidence_ref(receipt, f"provider:{k}:")
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
        "responseHash": _obj(_obj(receipt.get("bindings")).get("response")).get("sha256"),
    }


def receipt_provider_signature(e: PaidCallEvidence) -> list[Finding]:
    """The receipt's provider signature verifies under the profile's pinned provider key, over the response received."""
    receipt = receipt_of(e)
    signature = _receipt_signature(receipt)
    if signature is None:
        return [
            _fail(
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
            _fail(
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
                _pass("receipt.signature", f"verifies under pinned key {kid} over {response}", observed=kid)
            )
        except x402.VerificationError as exc:
            out.append(
                _fail(
                    "receipt.signature",
                    exc.code,
                    f"the receipt's provider signature does not verify under the pinned key: {exc.message}",
                    observed={"keyId": kid, "responseHash": signature.get("responseHash")},
                    expected={"responseHash": response},
                )
            )
    bound = _obj(_obj(receipt.get("bindings")).get("response")).get("sha256")
    out.append(
        _check(
            "receipt.signature_binding",
            str(signature.get("responseHash", "")).lower() == bound,
            "provider_signature_response_hash_mismatch",
            "the signed response hash is not the receipt's response binding",
            observed=signature.get("responseHash"),
            expected=bound,
            passed="the signature covers the bound response hash",
        )
    )
    embedded = _obj(_obj(receipt.get("verificationContext")).get("providerSigningKey")).get("publicKeyPem")
    if not (isinstance(embedded, str) and embedded.strip()):
        out.append(  # upstream's verifier cannot check the signature without it (x402-receipt-verifier.js:301-307)
            _fail(
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
            _check(
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
    ev = _obj(evidence)
    pem = ev.get("publicKeyPem")
    if ev.get("schemaVersion") != "VerificationKeyEvidence.v1" or not isinstance(pem, str):
        return [
            _fail(
                prop,
                "key_evidence_invalid",
                "not a VerificationKeyEvidence.v1 with a publicKeyPem",
                observed=ev.get("schemaVersion"),
            )
        ]
    try:
        x = x402.jwk_x_from_pem(pem)
    except x402.VerificationError as exc:
        return [_fail(prop, "key_evidence_invalid", f"publicKeyPem: {exc.message}")]
    return [
        _check(
            f"{prop}.keyId",
            ev.get("keyId") == x402.key_id_from_pem(pem),
            "key_evidence_key_id_mismatch",
            "keyId is not the key id of publicKeyPem",
            observed=ev.get("keyId"),
            expected=x402.key_id_from_pem(pem),
        ),
        _check(
            f"{prop}.jwk",
            ev.get("jwk") == {"crv": "Ed25519", "kty": "OKP", "x": x},
            "key_evidence_jwk_mismatch",
            "jwk is not publicKeyPem's",
            observed=ev.get("jwk"),
            expected={"crv": "Ed25519", "kty": "OKP", "x": x},
        ),
        _check(
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
            _fail(
                "receipt.verification_context",
                "verification_context_missing",
                "the receipt has no X402GateVerificationContext.v1",
                observed=_obj(context).get("schemaVersion"),
            )
        ]
    bindings = _obj(receipt.get("bindings"))
    out: list[Finding] = []
    for name, binding in (
        ("providerSigningKey", "providerSig"),
        ("providerQuoteSigningKey", "providerQuoteSig"),
    ):
        evidence = context.get(name)
        if evidence is None:
            continue  # no key claimed; x402.receipt.provider_signature judges missing signature material
        out += _key_evidence(f"receipt.{name}", evidence)
        bound = _obj(bindings.get(binding))
        thumb = bound.get("keyJwkThumbprintSha256")
        if thumb is not None:
            out.append(
                _check(
                    f"receipt.{binding}.thumbprint",
                    thumb == _obj(evidence).get("jwkThumbprintSha256"),
                    "provider_sig_thumbprint_binding_mismatch",
                    f"bindings.{binding}.keyJwkThumbprintSha256 is not {name}'s thumbprint",
                    observed=thumb,
                    expected=_obj(evidence).get("jwkThumbprintSha256"),
                )
            )
        kid = bound.get("providerKeyId")
        if kid is not None:
            out.append(
                _check(
                    f"receipt.{binding}.keyId",
                    kid == _obj(evidence).get("keyId"),
                    "provider_sig_key_id_binding_mismatch",
                    f"bindings.{binding}.providerKeyId is not {name}'s keyId",
                    observed=kid,
                    expected=_obj(evidence).get("keyId"),
                )
            )
    return out or [_pass("receipt.key_evidence", "no provider key is embedded", None)]


def _quote_offered(e: PaidCallEvidence) -> bool:
    first = e.exchange(FIRST)
    return first is not None and bool(first.header("x-nooterra-provider-quote-signature"))


def receipt_quote_signature(e: PaidCallEvidence) -> list[Finding]:
    """The receipt's provider quote signature re-verifies as upstream's receipt verifier does, under a pinned key,
    and the quote hash and id the receipt binds are the quote's (src/core/x402-receipt-verifier.js:357-447)."""
    receipt = receipt_of(e)
    payload = receipt.get("providerQuotePayload")
    signature = receipt.get("providerQuoteSignature")
    context = _obj(_obj(receipt.get("verificationContext")).get("providerQuoteSigningKey"))
    pem = context.get("publicKeyPem")
    status = _obj(_obj(receipt.get("bindings")).get("providerQuoteSig"))
    material = {
        "payload": isinstance(payload, dict),
        "signature": isinstance(signature, dict),
        "publicKey": isinstance(pem, str) and bool(pem.strip()),
    }
    if not all(material.values()):
        needed = status.get("required") is True or status.get("verified") is True or _quote_offered(e)
        return [
            _check(
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
        _check(
            "receipt.quote_signature_form",
            outcome.status != "malformed",
            "provider_quote_signature_parse_failed",
            f"the receipt's quote signature is malformed: {outcome.reason}",
            observed={k: signature.get(k) for k in ("schemaVersion", "algorithm", "keyId")},
            expected={"schemaVersion": quotesig.SIGNATURE_VERSION, "algorithm": "ed25519"},
            passed="a ToolProviderQuoteSignature.v1 (ed25519) over a well-formed ToolProviderQuotePayload.v1",
        ),
        _check(
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
        _check(
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
    evidence_hash = _evidence_ref(receipt, "provider_quote:payload_sha256:")
    evidence_id = _evidence_ref(receipt, "provider_quote:quote_id:")
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
                _check(
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


def receipt_pay_token(e: PaidCallEvidence) -> list[Finding]:
    """The NooterraPay token verifies under the API's keyset, carries the offer, lived at most 300 s, and is the bound token."""
    receipt = receipt_of(e)
    offer = offer_of(e)
    paid = _paid_2xx(e)
    token = e.token
    if token is None:
        raise Undetermined(f"the gate state of {e.gate_id} carries no NooterraPay token")
    keyset = api_keyset(e)
    used_at = _at(paid)
    out: list[Finding] = []
    if e.token_value is not None:
        try:
            x402.verify_pay_token(e.token_value, keyset, now=used_at)
            out.append(_pass("token.signature", f"verifies under the API keyset key {token.kid}"))
        except x402.VerificationError as exc:
            out.append(
                _fail(
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
            _fail(
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
        _check(
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
        _check(
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
            _fail(
                "token.lifetime",
                "pay_token_claims_mismatch",
                "the token has no integer iat/exp",
                observed={"iat": iat, "exp": exp},
            )
        )
    else:
        out.append(
            _check(
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
            _check(
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
        "receipt.bindings.token.sha256": _obj(_obj(receipt.get("bindings")).get("token")).get("sha256"),
        "x-nooterra-provider-token-sha256": paid.header("x-nooterra-provider-token-sha256"),
    }
    differ = sorted(k for k, v in bound.items() if v != token.sha256)
    out.append(
        _check(
            "token.binding",
            not differ,
            "pay_token_binding_mismatch",
            f"{', '.join(differ)} is not the sha256 of the gate's token",
            observed=bound,
            expected=token.sha256,
            passed="the receipt and the provider bind the token that paid",
        )
    )
    kid_bound = _obj(_obj(receipt.get("bindings")).get("token")).get("kid")
    out.append(
        _check(
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
    settlement = _obj(receipt.get("settlementReceipt"))
    status = settlement.get("status")
    out = [
        _check(
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
            _fail(
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
        _check(
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
        terms = _obj(body["gate"].get("terms"))
        out.append(
            _check(
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
            holdback = _obj(body["gate"].get("holdback"))
            settled = _obj(body.get("holdbackSettlement"))
            got_hold = {
                "gate.holdback": holdback.get("amountCents"),
                "holdbackSettlement": settled.get("amountCents"),
            }
            out.append(
                _check(
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
    ("x-nooterra-settlement-status", lambda r: _obj(r.get("settlementReceipt")).get("status")),
    (
        "x-nooterra-released-amount-cents",
        lambda r: _obj(r.get("settlementReceipt")).get("releasedAmountCents"),
    ),
    (
        "x-nooterra-refunded-amount-cents",
        lambda r: _obj(r.get("settlementReceipt")).get("refundedAmountCents"),
    ),
    ("x-nooterra-decision-id", lambda r: _obj(r.get("decisionRecord")).get("decisionId")),
    ("x-nooterra-policy-hash", lambda r: _obj(r.get("decisionRecord")).get("policyHashUsed")),
    ("x-nooterra-verification-status", lambda r: _obj(r.get("decisionRecord")).get("verificationStatus")),
    ("x-nooterra-gate-id", lambda r: r.get("gateId")),
)


def receipt_headers_agree(e: PaidCallEvidence) -> list[Finding]:
    """Every settlement header the client received says what the receipt says (absent headers: x402.paid.settled)."""
    receipt = receipt_of(e)
    paid = _paid_2xx(e)
    differ: dict[str, dict[str, Any]] = {}
    compared = []
    for name, read in _HEADER_FIELDS:
        header = paid.header(name)
        if header is None:
            continue
        compared.append(name)
        value = read(receipt)
        if header != _canon(value):
            differ[name] = {"header": header, "receipt": value}
    return [
        _check(
            "receipt.headers",
            not differ,
            "settlement_header_contradicts_receipt",
            f"the client was told something the receipt contradicts: {', '.join(sorted(differ))}",
            observed=differ,
            expected="headers equal to the receipt",
            passed=f"{len(compared)} settlement headers agree",
        )
    ]


# --- x402.replay.* ----------------------------------------------------------------------------


def _hashes(receipt: Mapping[str, Any]) -> dict[str, Any]:
    decision, settlement = _obj(receipt.get("decisionRecord")), _obj(receipt.get("settlementReceipt"))
    out: dict[str, Any] = {
        "decisionHash": decision.get("decisionHash"),
        "receiptHash": settlement.get("receiptHash"),
    }
    try:
        out["H(record)"] = canonical_hash(dict(receipt))
    except CanonicalJsonError:
        out["H(record)"] = None
    return out


def replay_refetch_stable(e: PaidCallEvidence) -> list[Finding]:
    """Fetching the receipt again (by id, and by run after the replay) gives the same record and hashes."""
    receipt = receipt_of(e)
    first = _hashes(receipt)
    body = _json_body(e, RECEIPT_BY_ID, "the receipt was not re-fetched by id")
    again = _obj(_obj(body).get("receipt"))
    out = [
        _check(
            "replay.refetch_by_id",
            _hashes(again) == first,
            "receipt_changed_on_refetch",
            f"GET /x402/receipts/{receipt.get('receiptId')} answers a different record than the first fetch",
            observed=_hashes(again),
            expected=first,
            passed="the same hashes by id",
        )
    ]
    after = e.exchange(RECEIPTS_AFTER)
    if after is not None and after.status == 200:
        same = [
            r for r in receipts_of(e, RECEIPTS_AFTER) if _obj(r).get("receiptId") == receipt.get("receiptId")
        ]
        got = _hashes(_obj(same[0])) if same else None
        out.append(
            _check(
                "replay.refetch_by_run",
                got == first,
                "receipt_changed_on_refetch",
                f"run {e.run_id} lists receipt {receipt.get('receiptId')} differently on a later fetch",
                observed=got,
                expected=first,
                passed="the same hashes by run",
            )
        )
    return out


def replay_settles_once(e: PaidCallEvidence) -> list[Finding]:
    """Replaying the settled gate id once creates no second settlement, receipt or decision."""
    if e.replay_skipped is not None:
        raise SpendNotAllowed(e.replay_skipped["message"])
    paid = _paid_2xx(e)
    receipt_of(e)  # only a settled gate can be replayed: see x402.receipt.present
    replay = _need(e, REPLAY, "the settled gate id was not replayed")
    before, after = gate_state(e), gate_state(e, GATE_AFTER)
    receipts_before, receipts_after = receipts_of(e), receipts_of(e, RECEIPTS_AFTER)
    out = [
        _check(
            "replay.receipts",
            len(receipts_after) == len(receipts_before),
            "replay_created_receipt",
            f"the replay added receipts: run {e.run_id} had {len(receipts_before)}, now {len(receipts_after)}",
            observed=len(receipts_after),
            expected=len(receipts_before),
            passed="no receipt added",
        ),
        _check(
            "replay.settlement",
            (after.get("settlement"), after.get("holdbackSettlement"))
            == (before.get("settlement"), before.get("holdbackSettlement")),
            "replay_changed_settlement",
            "the replay changed the gate's settlement records",
            observed={
                "settlement": after.get("settlement"),
                "holdbackSettlement": after.get("holdbackSettlement"),
            },
            expected={
                "settlement": before.get("settlement"),
                "holdbackSettlement": before.get("holdbackSettlement"),
            },
            passed="settlement records unchanged",
        ),
    ]
    for name in (
        "x-nooterra-decision-id",
        "x-nooterra-settlement-status",
        "x-nooterra-released-amount-cents",
    ):
        got = replay.header(name)
        if got is not None:
            out.append(
                _check(
                    f"replay.{name}",
                    got == paid.header(name),
                    "replay_new_decision",
                    f"the replay answered {name} {got!r}, the paid call {paid.header(name)!r}",
                    observed=got,
                    expected=paid.header(name),
                    passed=f"{name} unchanged",
                )
            )
    return out


# --- registry ---------------------------------------------------------------------------------

PROPERTIES: dict[str, Callable[[PaidCallEvidence], list[Finding]]] = {
    "x402.offer.payment_required": offer_payment_required,
    "x402.offer.headers_agree": offer_headers_agree,
    "x402.offer.gate_id": offer_gate_id,
    "x402.offer.quote_valid": offer_quote_valid,
    "x402.offer.within_spend_cap": offer_within_spend_cap,
    "x402.paid.settled": paid_settled,
    "x402.paid.released": paid_released,
    "x402.paid.response_sha256": paid_response_sha256,
    "x402.paid.provider_signature": paid_provider_signature,
    "x402.paid.provider_key_pinned": paid_provider_key_pinned,
    "x402.paid.amounts": paid_amounts,
    "x402.receipt.present": receipt_present,
    "x402.receipt.identity": receipt_identity,
    "x402.receipt.kernel_hashes": receipt_kernel_hashes,
    "x402.receipt.kernel_invariants": receipt_kernel_invariants,
    "x402.receipt.http_bindings": receipt_http_bindings,
    "x402.receipt.provider_signature": receipt_provider_signature,
    "x402.receipt.key_evidence": receipt_key_evidence,
    "x402.receipt.quote_signature": receipt_quote_signature,
    "x402.receipt.pay_token": receipt_pay_token,
    "x402.receipt.amounts": receipt_amounts,
    "x402.receipt.headers_agree": receipt_headers_agree,
    "x402.replay.refetch_stable": replay_refetch_stable,
    "x402.replay.settles_once": replay_settles_once,
}


def evaluate(check_id: str, evidence: PaidCallEvidence) -> list[Finding]:
    """The findings of one check id; `Undetermined`/`SpendNotAllowed` propagate (the check cannot be decided)."""
    findings = PROPERTIES[check_id](evidence)
    if not findings:  # every evaluator reports at least one property; an empty list would read as a pass
        raise Undetermined(f"{check_id}: no property was evaluated")
    return findings
