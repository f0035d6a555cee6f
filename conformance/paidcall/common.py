"""Findings, and the prerequisites every property of a paid call shares: an exchange that was made, the
offer, the keys, the gate and the receipt (each raises `Undetermined` when it is missing)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conformance import x402
from conformance.errors import (
    Undetermined,
)
from conformance.paidcall.evidence import (
    API_KEYSET,
    FIRST,
    GATE,
    PAID,
    PROBE_ERRORS,
    PROVIDER_KEYSET,
    RECEIPTS,
    Exchange,
    PaidCallEvidence,
    Status,
)


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


def passes(prop: str, message: str, observed: Any = None, expected: Any = None) -> Finding:
    return Finding(prop=prop, status="pass", message=message, observed=observed, expected=expected)


def fails(prop: str, code: str, message: str, observed: Any = None, expected: Any = None) -> Finding:
    return Finding(prop=prop, status="fail", code=code, message=message, observed=observed, expected=expected)


def judge(
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
        return passes(prop, passed or message, observed, expected)
    return fails(prop, code, message, observed, expected)


# --- prerequisites ----------------------------------------------------------------------------


def need_step(e: PaidCallEvidence, step: str, why: str) -> Exchange:
    ex = e.exchange(step)
    if ex is None:
        raise Undetermined(f"no {step} exchange was made: {why}")
    if ex.status is None:
        cls = PROBE_ERRORS.get(ex.error_code or "", Undetermined)
        raise cls(f"{ex.method} {ex.url}: {ex.error or 'no answer'}")
    return ex


def first_call(e: PaidCallEvidence) -> Exchange:
    return need_step(e, FIRST, "the first call to the gateway was not made")


def offer_402(e: PaidCallEvidence) -> Exchange:
    first = first_call(e)
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


def raw_offer(first: Exchange) -> str | None:
    return first.header("x-payment-required") or first.header("payment-required")


def offer_of(e: PaidCallEvidence) -> Offer:
    """The parsed offer of the first call; `Undetermined` when there is none (see x402.offer.payment_required)."""
    first = offer_402(e)
    raw = raw_offer(first)
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


def paid_call(e: PaidCallEvidence) -> Exchange:
    first_call(e)  # a first call that got no answer is the reason, with its own error
    if e.refused is not None:
        raise Undetermined(f"the suite did not pay: {e.refused['message']}")
    return need_step(e, PAID, "the paid retry was not made")


def paid_2xx(e: PaidCallEvidence) -> Exchange:
    paid = paid_call(e)
    if not 200 <= (paid.status or 0) < 300:
        raise Undetermined(f"the paid retry answered {paid.status}; see x402.paid.settled")
    return paid


def json_body(e: PaidCallEvidence, step: str, why: str) -> Any:
    ex = need_step(e, step, why)
    if ex.status != 200:
        hint = " (does the profile's ops token have ops_read?)" if ex.status in (401, 403) else ""
        raise Undetermined(f"{ex.method} {ex.url} answered {ex.status}{hint}: {ex.preview()}")
    body = ex.json()
    if body is None:
        raise Undetermined(f"{ex.method} {ex.url} did not answer JSON: {ex.preview()}")
    return body


def response_hash(e: PaidCallEvidence) -> str:
    """The hash of the paid response as the suite computes it (canonical JSON for JSON bodies, else raw bytes)."""
    paid = paid_2xx(e)
    return x402.response_sha256(paid.body, paid.content_type)


def provider_keys(e: PaidCallEvidence) -> dict[str, x402.KeysetKey]:
    """The provider's published keys (from the keyset URL the profile pins), by kid."""
    body = json_body(e, PROVIDER_KEYSET, "the provider keyset was not fetched")
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
    return json_body(e, API_KEYSET, "the API keyset was not fetched")


def gate_state(e: PaidCallEvidence, step: str = GATE) -> dict[str, Any]:
    """``GET /x402/gate/<gateId>`` as answered: ``{gate, settlement, holdbackSettlement}``."""
    paid_call(e)
    body = json_body(e, step, "the gate state was not fetched")
    if not isinstance(body, dict) or not isinstance(body.get("gate"), dict):
        raise Undetermined(f"the gate state of {e.gate_id} is not an object with a gate")
    return body


def receipts_of(e: PaidCallEvidence, step: str = RECEIPTS) -> list[Any]:
    """The receipts ``GET /x402/receipts?runId=x402_<gateId>`` answered."""
    paid_call(e)
    body = json_body(e, step, "the receipts were not fetched")
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


def obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def evidence_ref(receipt: Mapping[str, Any], prefix: str) -> str | None:
    refs = receipt.get("evidenceRefs")
    if not isinstance(refs, list):
        return None
    return next((r[len(prefix) :] for r in refs if isinstance(r, str) and r.startswith(prefix)), None)


def int_or_none(value: str | None) -> int | None:
    if value is None or not value.strip().lstrip("-").isdigit():
        return None
    return int(value.strip())


def at_seconds(ex: Exchange) -> float:
    parsed = x402.parse_iso(ex.at)
    if parsed is None:
        raise Undetermined(f"the {ex.step} exchange has no valid timestamp ({ex.at!r})")
    return parsed.timestamp()


def canon(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
