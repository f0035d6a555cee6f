"""The pure rules behind the Nooterra live checks: ops tokens, metrics, alert rules, payment offers."""

from __future__ import annotations

import pytest

from conformance import nooterra_live as live


class TestOpsTokens:
    def test_scoped_tokens_pass(self) -> None:
        assert live.ops_token_problems("tok_a:ops_read,ops_write;tok_b:finance_read") == []

    @pytest.mark.parametrize(
        ("value", "fragment"),
        [
            (None, "not set"),
            ("", "not set"),
            ("tok_a:ops_read;tok_b:", "token #2 has no scopes"),
            ("tok_a", "token #1 has no scopes"),
            ("tok_a:ops_read,ops_admin", "unknown scopes ops_admin"),
            ("tok.a:ops_read", "parses it as an API key"),
            ("tok_a:ops_read:extra", "more than one ':'"),
            ("tok_a:" + ",".join(live.WRITE_SCOPES), "broad shared token"),
        ],
    )
    def test_problems_are_named(self, value: str | None, fragment: str) -> None:
        assert any(fragment in p for p in live.ops_token_problems(value))


def test_metric_samples_parse_names_labels_and_values() -> None:
    text = '# TYPE a_gauge gauge\na_gauge 1\nm{kind="x",b="y\\"z"} 17\n\nbad line\n'
    samples = live.metric_samples(text)
    assert samples["a_gauge"] == [({}, "1")]
    assert samples["m"] == [({"kind": "x", "b": 'y\\"z'}, "17")]
    assert live.metric_names(text) == {"a_gauge", "m"}


@pytest.mark.parametrize(
    ("expr", "series"),
    [
        ("replay_mismatch_gauge > 0", {"replay_mismatch_gauge"}),
        ('time() - maintenance_last_success_unixtime{kind="retention_cleanup"} > 3600',
         {"maintenance_last_success_unixtime"}),
        ("increase(ledger_apply_fail_total[5m]) > 0", {"ledger_apply_fail_total"}),
        ("sum by (kind) (outbox_pending_gauge) > 2e3", {"outbox_pending_gauge"}),
        ("a_gauge > 0 or b_gauge > 0 unless on (job) c_gauge", {"a_gauge", "b_gauge", "c_gauge"}),
        ('absent(up{job="api"}) offset 5m', {"up"}),
    ],
)  # fmt: skip
def test_promql_series(expr: str, series: set[str]) -> None:
    assert live.promql_series(expr) == series


RULES = """
groups:
  - name: g
    rules:
      - alert: A
        expr: a_gauge > 0
        for: 5m
      - record: job:b:sum
        expr: sum(b_gauge)
"""


class TestAlertRules:
    def test_valid_file(self) -> None:
        rules, problems = live.alert_rules(RULES)
        assert problems == []
        assert [(r.group, r.alert, r.expr) for r in rules] == [("g", "A", "a_gauge > 0")]
        assert live.unknown_series(rules, {"a_gauge"}) == {}
        assert live.unknown_series(rules, {"other"}) == {"A": ["a_gauge"]}

    @pytest.mark.parametrize(
        ("text", "fragment"),
        [
            ("groups: [", "not valid YAML"),
            ("rules: []", "no non-empty top-level 'groups'"),
            ("groups:\n  - rules: []", "groups[0] has no name"),
            ("groups:\n  - name: g\n    rules: []", "group 'g' has no rules"),
            ("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: a > 0\n        for: 5 minutes",
             "'for' is not a duration"),
            ("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: sum(a > 0", "unbalanced"),
            ("groups:\n  - name: g\n    rules:\n      - alert: A", "has no expr"),
            ("groups:\n  - name: g\n    rules:\n      - record: r\n        expr: a", "no alerting rules"),
        ],
    )  # fmt: skip
    def test_invalid_files_are_explained(self, text: str, fragment: str) -> None:
        _, problems = live.alert_rules(text)
        assert any(fragment in p for p in problems), problems


class TestPaymentOffer:
    def test_pairs_form(self) -> None:
        offer, error = live.payment_offer("amountCents=500; currency=USD; providerId=p; toolId=t")
        assert error is None
        assert offer is not None
        assert live.offer_amount(offer) == 500

    def test_json_form(self) -> None:
        offer, error = live.payment_offer('{"price_cents": "250", "currency": "USD"}')
        assert error is None
        assert offer is not None
        assert live.offer_amount(offer) == 250

    @pytest.mark.parametrize(
        ("header", "fragment"),
        [("amountCents=1; amountCents=2", "appears twice"), ("novalue", "not key=value"), ("{bad", "not valid JSON"),
         ("[1]", "not key=value"), ("", "empty")],
    )  # fmt: skip
    def test_malformed(self, header: str, fragment: str) -> None:
        offer, error = live.payment_offer(header)
        assert offer is None
        assert error is not None
        assert fragment in error

    def test_amount_needs_a_positive_safe_integer(self) -> None:
        assert live.offer_amount({"amountCents": "0", "price": "12"}) == 12
        assert live.offer_amount({"amount": str(2**53)}) is None
        assert live.offer_amount({"amountCents": "1.5"}) is None
