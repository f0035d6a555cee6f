"""`conformance.x402` beyond the vectors: offers in both header forms, the holdback arithmetic, timestamps."""

from __future__ import annotations

import pytest

from conformance import x402


class TestOffers:
    """``x-payment-required`` values as the gateway reads them."""

    def test_pairs_form(self) -> None:
        """``k=v; k=v`` pairs, spaces around them ignored, values kept as text."""
        offer = x402.parse_payment_required(
            " amountCents=500 ;currency=USD; providerId=agt_p:1; toolId=exa.search "
        )
        assert offer == {
            "amountCents": "500",
            "currency": "USD",
            "providerId": "agt_p:1",
            "toolId": "exa.search",
        }
        assert x402.offer_amount(offer) == 500

    def test_json_form(self) -> None:
        """A JSON object, with typed values."""
        offer = x402.parse_payment_required('{"amountCents": 500, "currency": "USD", "quoteRequired": false}')
        assert offer == {"amountCents": 500, "currency": "USD", "quoteRequired": False}
        assert x402.offer_amount(offer) == 500

    @pytest.mark.parametrize(
        "raw",
        ["amountCents=1; amountCents=2", '{"amountCents": 1, "amountCents": 2}'],
        ids=["pairs", "json"],
    )
    def test_repeated_key_is_ambiguous(self, raw: str) -> None:
        """A key given twice, in either form, is refused as upstream does."""
        with pytest.raises(x402.VerificationError) as info:
            x402.parse_payment_required(raw)
        assert info.value.code == "X402_PAYMENT_REQUIRED_AMBIGUOUS_FIELDS"

    @pytest.mark.parametrize("raw", ["", "   ;  ", "amountCents", "=5", "[1, 2]", "{nope"])
    def test_unparseable(self, raw: str) -> None:
        """Text that is neither form is ``offer_unparseable``."""
        with pytest.raises(x402.VerificationError) as info:
            x402.parse_payment_required(raw)
        assert info.value.code == "offer_unparseable"

    @pytest.mark.parametrize(
        ("offer", "amount"),
        [
            ({"amountCents": "0", "price": "250"}, 250),
            ({"amount_cents": 7, "amount": 9}, 7),
            ({"amountCents": True, "priceCents": 3}, 3),
            ({"amountCents": -5, "price": 2**53}, None),
            ({"amountCents": "5.00"}, None),
            ({}, None),
        ],
        ids=["first-positive", "key-order", "bool-is-not-a-number", "unsafe", "decimal-text", "none"],
    )
    def test_amount(self, offer: dict[str, object], amount: int | None) -> None:
        """The first positive safe integer among amountCents, amount_cents, priceCents, price_cents, price, amount."""
        assert x402.offer_amount(offer) == amount


class TestHoldback:
    """released = amount - floor(amount * bps / 10000); the holdback is refunded and re-locked."""

    @pytest.mark.parametrize(
        ("amount", "bps", "split"),
        [
            (500, 275, (487, 13, 13)),
            (500, 0, (500, 0, 0)),
            (1, 9999, (1, 0, 0)),
            (10_000, 10_000, (0, 10_000, 10_000)),
            (399, 25, (399, 0, 0)),
        ],
    )
    def test_released_split(self, amount: int, bps: int, split: tuple[int, int, int]) -> None:
        """Floor, never rounding: 500 at 275 bps holds back 13 (13.75 floored)."""
        assert x402.settlement_split(amount, bps, released=True) == split
        released, refunded, held = split
        assert released + refunded == amount
        assert held == x402.holdback_cents(amount, bps)

    def test_refunded_holds_nothing_back(self) -> None:
        """A refunded (red) gate returns everything and holds nothing back."""
        assert x402.settlement_split(500, 275, released=False) == (0, 500, 0)
        assert x402.holdback_cents(0, 275) == 0


class TestTimestamps:
    """Kernel timestamps must carry a zone."""

    @pytest.mark.parametrize(
        ("value", "ok"),
        [
            ("2026-03-25T00:00:00.000Z", True),
            ("2026-03-25T01:00:00+01:00", True),
            ("2026-03-25T00:00:00", False),
            ("yesterday", False),
            (5, False),
        ],
    )
    def test_parse_iso(self, value: object, ok: bool) -> None:
        """ISO 8601 with Z or an offset parses; a naive or non-ISO value does not."""
        assert (x402.parse_iso(value) is not None) is ok

    def test_offsets_compare_as_instants(self) -> None:
        """01:00+01:00 is the same instant as 00:00Z."""
        assert x402.parse_iso("2026-03-25T01:00:00+01:00") == x402.parse_iso("2026-03-25T00:00:00Z")
