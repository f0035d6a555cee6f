"""x402.replay.*: the receipt fetched again is the same, and replaying the settled gate settles nothing twice."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conformance.canonical import CanonicalJsonError, canonical_hash
from conformance.errors import (
    SpendNotAllowed,
)
from conformance.paidcall.common import (
    Finding,
    gate_state,
    json_body,
    judge,
    need_step,
    obj,
    paid_2xx,
    receipt_of,
    receipts_of,
)
from conformance.paidcall.evidence import (
    GATE_AFTER,
    RECEIPT_BY_ID,
    RECEIPTS_AFTER,
    REPLAY,
    PaidCallEvidence,
)


def _hashes(receipt: Mapping[str, Any]) -> dict[str, Any]:
    decision, settlement = obj(receipt.get("decisionRecord")), obj(receipt.get("settlementReceipt"))
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
    body = json_body(e, RECEIPT_BY_ID, "the receipt was not re-fetched by id")
    again = obj(obj(body).get("receipt"))
    out = [
        judge(
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
            r for r in receipts_of(e, RECEIPTS_AFTER) if obj(r).get("receiptId") == receipt.get("receiptId")
        ]
        got = _hashes(obj(same[0])) if same else None
        out.append(
            judge(
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
    paid = paid_2xx(e)
    receipt_of(e)  # only a settled gate can be replayed: see x402.receipt.present
    replay = need_step(e, REPLAY, "the settled gate id was not replayed")
    before, after = gate_state(e), gate_state(e, GATE_AFTER)
    receipts_before, receipts_after = receipts_of(e), receipts_of(e, RECEIPTS_AFTER)
    out = [
        judge(
            "replay.receipts",
            len(receipts_after) == len(receipts_before),
            "replay_created_receipt",
            f"the replay added receipts: run {e.run_id} had {len(receipts_before)}, now {len(receipts_after)}",
            observed=len(receipts_after),
            expected=len(receipts_before),
            passed="no receipt added",
        ),
        judge(
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
                judge(
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
