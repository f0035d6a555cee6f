"""Tests for conformance.canonical against the upstream vectors and ECMAScript semantics."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.canonical import (
    CanonicalJsonError,
    canonical_bytes,
    canonical_hash,
    canonical_json,
    sha256_hex,
)

DATA_FILE = Path(__file__).parent / "data" / "nooterra-gate-reports.json"

# canonicalJsonCases.numbers from the upstream vector file: JavaScript source text -> canonical output.
NUMBER_VECTORS: dict[str, str] = {
    "0": "0",
    "1": "1",
    "-1": "-1",
    "1.5": "1.5",
    "0.1": "0.1",
    "1e21": "1e+21",
    "1e-7": "1e-7",
    "123456789012345680000": "123456789012345680000",
    "1.7976931348623157e308": "1.7976931348623157e+308",
    "5e-324": "5e-324",
    "100": "100",
    "2**53": "9007199254740992",
    "0.000001": "0.000001",
    "1e20": "100000000000000000000",
}

# The Python value each JavaScript expression above evaluates to.
NUMBER_INPUTS: dict[str, int | float] = {
    "0": 0,
    "1": 1,
    "-1": -1,
    "1.5": 1.5,
    "0.1": 0.1,
    "1e21": 1e21,
    "1e-7": 1e-7,
    "123456789012345680000": 123456789012345680000.0,
    "1.7976931348623157e308": 1.7976931348623157e308,
    "5e-324": 5e-324,
    "100": 100,
    "2**53": 2**53,
    "0.000001": 0.000001,
    "1e20": 1e20,
}

# canonicalJsonCases.objectInputDescription, written as a Python literal.
VECTOR_OBJECT: dict[str, object] = {
    "b": 1,
    "a": 2,
    "10": 3,
    "9": 4,
    "é": 5,
    "Z": 6,
    "_x": 7,
    "-y": 8,
    "\U0001f600": 9,
    "\uff21": 10,
    "s": 'line\n\u0001\u007f"\\/é😀',
}

# canonicalJsonCases.objectOutput.
VECTOR_OBJECT_OUTPUT = (
    '{"9":4,"10":3,"-y":8,"Z":6,"_x":7,"a":2,"b":1,'
    '"s":"line\\n\\u0001\x7f\\"\\\\/é😀","é":5,"😀":9,"\uff21":10}'
)

GATE_CORE_KEYS = (
    "schemaVersion",
    "artifactHashScope",
    "capturedAt",
    "inputs",
    "sources",
    "checks",
    "blockingIssues",
    "verdict",
)


def _load_data() -> dict[str, Any]:
    with DATA_FILE.open(encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


DATA = _load_data()
GATE_REPORTS: dict[str, dict[str, Any]] = DATA["gateReports"]
CRYPTO: dict[str, Any] = DATA["crypto"]


def _gate_core(report: dict[str, Any]) -> dict[str, object]:
    core: dict[str, object] = {key: report.get(key) for key in GATE_CORE_KEYS}
    for key in ("checks", "blockingIssues"):
        if core[key] is None:
            core[key] = []
    return core


def _json_equal(left: object, right: object) -> bool:
    """Compare JSON values, treating numbers by value and keeping bools apart from numbers."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return float(left) == float(right)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(_json_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_json_equal(left[k], right[k]) for k in left)
    return type(left) is type(right) and left == right


def _without_negative_zero(value: float) -> float:
    return 0.0 if value == 0 else value


finite_floats = st.floats(allow_nan=False, allow_infinity=False).map(_without_negative_zero)
safe_ints = st.integers(min_value=-(2**53), max_value=2**53)
json_values = st.recursive(
    st.none() | st.booleans() | safe_ints | finite_floats | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=25,
)


class TestUpstreamVectors:
    def test_number_inputs_cover_every_vector(self) -> None:
        """Every upstream number expression has a Python input value."""
        assert NUMBER_INPUTS.keys() == NUMBER_VECTORS.keys()

    @pytest.mark.parametrize(("expression", "expected"), NUMBER_VECTORS.items(), ids=list(NUMBER_VECTORS))
    def test_number_vector(self, expression: str, expected: str) -> None:
        """Each upstream number is written exactly as Node writes it."""
        assert canonical_json(NUMBER_INPUTS[expression]) == expected

    def test_object_vector(self) -> None:
        """The upstream object case produces its exact canonical text."""
        assert canonical_json(VECTOR_OBJECT) == VECTOR_OBJECT_OUTPUT

    def test_object_vector_bytes_are_utf8(self) -> None:
        """The canonical bytes of the upstream object are the UTF-8 encoding of its text."""
        assert canonical_bytes(VECTOR_OBJECT) == VECTOR_OBJECT_OUTPUT.encode("utf-8")


class TestGateReports:
    def test_all_four_reports_present(self) -> None:
        """The data file holds the four upstream gate reports."""
        assert sorted(GATE_REPORTS) == [
            "self-host-topology-bundle-gate",
            "self-host-topology-bundle-gate.FAILING-EXAMPLE",
            "self-host-upgrade-migration-gate",
            "serving-mode-boundary-gate",
        ]

    @pytest.mark.parametrize("name", sorted(GATE_REPORTS))
    def test_artifact_hash_recomputes(self, name: str) -> None:
        """A report's artifactHash is the canonical hash of its deterministic core."""
        report = GATE_REPORTS[name]
        assert canonical_hash(_gate_core(report)) == report["artifactHash"]

    def test_core_ignores_generated_at(self) -> None:
        """Changing generatedAt does not change the recomputed artifactHash."""
        report = dict(GATE_REPORTS["serving-mode-boundary-gate"])
        report["generatedAt"] = "2030-01-01T00:00:00.000Z"
        assert canonical_hash(_gate_core(report)) == report["artifactHash"]

    def test_core_depends_on_check_order(self) -> None:
        """Reordering the stored checks changes the hash, so checks must keep their stored order."""
        report = dict(GATE_REPORTS["self-host-topology-bundle-gate"])
        report["checks"] = list(reversed(report["checks"]))
        assert canonical_hash(_gate_core(report)) != report["artifactHash"]


class TestCryptoHashes:
    def test_decision_hash(self) -> None:
        """decisionHash is the canonical hash of the decision record without its hash keys."""
        record = CRYPTO["decisionRecord"]
        body = {k: v for k, v in record.items() if k not in {"decisionHash", "artifactHash"}}
        assert canonical_hash(body) == record["decisionHash"]

    def test_receipt_hash(self) -> None:
        """receiptHash is the canonical hash of the receipt without its hash keys."""
        receipt = CRYPTO["settlementReceipt"]
        body = {k: v for k, v in receipt.items() if k not in {"receiptHash", "artifactHash"}}
        assert canonical_hash(body) == receipt["receiptHash"]

    def test_receipt_binds_decision(self) -> None:
        """The receipt's decisionRef names the decision record and its hash."""
        record = CRYPTO["decisionRecord"]
        receipt = CRYPTO["settlementReceipt"]
        expected = {"decisionId": record["decisionId"], "decisionHash": record["decisionHash"]}
        assert receipt["decisionRef"] == expected

    def test_provider_response_hash(self) -> None:
        """providerResponseHash is the canonical hash of the JSON response body."""
        assert canonical_hash(CRYPTO["providerResponseBody"]) == CRYPTO["providerResponseHash"]

    def test_provider_signature_payload_hash(self) -> None:
        """The provider signature's payloadHash is the canonical hash of its payload object."""
        signature = CRYPTO["providerSignature"]
        payload = {
            "schemaVersion": "ToolProviderSignaturePayload.v1",
            "responseHash": signature["responseHash"].lower(),
            "nonce": signature["nonce"].lower(),
            "signedAt": signature["signedAt"],
        }
        assert canonical_hash(payload) == signature["payloadHash"]

    def test_provider_signature_binds_response(self) -> None:
        """The provider signature covers the recomputed response hash."""
        assert CRYPTO["providerSignature"]["responseHash"] == CRYPTO["providerResponseHash"]

    def test_nooterra_pay_payload_hash(self) -> None:
        """nooterraPayPayloadHash is the canonical hash of the token payload."""
        payload = CRYPTO["nooterraPayEnvelope"]["payload"]
        assert canonical_hash(payload) == CRYPTO["nooterraPayPayloadHash"]

    def test_nooterra_pay_token_is_canonical_envelope(self) -> None:
        """The token is the unpadded base64url of the envelope's canonical JSON."""
        encoded = base64.urlsafe_b64encode(canonical_bytes(CRYPTO["nooterraPayEnvelope"]))
        assert encoded.rstrip(b"=").decode("ascii") == CRYPTO["nooterraPayToken"]

    def test_nooterra_pay_token_sha256(self) -> None:
        """nooterraPayTokenSha256 is the sha256 of the token's UTF-8 text."""
        token: str = CRYPTO["nooterraPayToken"]
        assert sha256_hex(token.encode("utf-8")) == CRYPTO["nooterraPayTokenSha256"]

    def test_request_binding_sha256(self) -> None:
        """requestBindingSha256 is the sha256 of method, host, path and body digest joined by newlines."""
        example = CRYPTO["requestBindingExample"]
        joined = "\n".join(
            [example["method"], example["host"].lower(), example["pathWithQuery"], example["bodySha256"]]
        )
        assert sha256_hex(joined.encode("utf-8")) == example["requestBindingSha256"]

    def test_empty_body_sha256(self) -> None:
        """The request binding example's body digest is the sha256 of empty bytes."""
        assert sha256_hex(b"") == CRYPTO["requestBindingExample"]["bodySha256"]

    def test_key_id_from_pem(self) -> None:
        """The key id is "key_" plus the first 24 hex characters of the PEM's sha256."""
        pem: str = CRYPTO["publicKeyPem"]
        assert "key_" + sha256_hex(pem.encode("utf-8"))[:24] == CRYPTO["keyIdFromPem"]


class TestStrings:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ('"', '"\\""'),
            ("\\", '"\\\\"'),
            ("\b\f\n\r\t", '"\\b\\f\\n\\r\\t"'),
            ("\x00\x01\x1b\x1f", '"\\u0000\\u0001\\u001b\\u001f"'),
            ("/\x7f", '"/\x7f"'),
            ("é\u2028\uff21", '"é\u2028\uff21"'),
            ("😀", '"😀"'),
        ],
    )
    def test_escaping(self, text: str, expected: str) -> None:
        """Strings use JSON.stringify escaping with lowercase hex and raw non-ASCII."""
        assert canonical_json(text) == expected

    def test_lone_surrogates_are_escaped_lowercase(self) -> None:
        """A lone surrogate is written as a lowercase \\u escape."""
        assert canonical_json("a\ud800b\udfff") == '"a\\ud800b\\udfff"'

    def test_reversed_surrogates_are_both_lone(self) -> None:
        """A low surrogate followed by a high surrogate is two lone surrogates."""
        assert canonical_json("\ude00\ud83d") == '"\\ude00\\ud83d"'

    def test_split_surrogate_pair_is_joined(self) -> None:
        """A high and low surrogate stored as two code points are written as the astral character."""
        assert canonical_json("\ud83d\ude00") == '"😀"'

    def test_lone_surrogate_bytes_encode(self) -> None:
        """canonical_bytes does not fail on lone surrogates because they are escaped."""
        assert canonical_bytes(["\udbff"]) == b'["\\udbff"]'

    def test_astral_character_is_raw_utf8(self) -> None:
        """An astral character is written as its four UTF-8 bytes."""
        assert canonical_bytes("\U0001f600") == b'"\xf0\x9f\x98\x80"'


class TestObjects:
    def test_integer_like_keys_first_in_numeric_order(self) -> None:
        """Array-index keys come first in numeric order, then the rest by code units."""
        value = {"b": 0, "10": 0, "a": 0, "9": 0, "0": 0}
        assert canonical_json(value) == '{"0":0,"9":0,"10":0,"a":0,"b":0}'

    @pytest.mark.parametrize("key", ["01", "-1", "1.0", "+1", "4294967295", "00", " 1", "1\n", "\u0661"])
    def test_not_integer_like(self, key: str) -> None:
        """Keys that are not canonical array indices sort after the integer-like keys."""
        assert canonical_json({key: 1, "5": 2}).startswith('{"5":2,')

    def test_largest_array_index_is_integer_like(self) -> None:
        """4294967294 is the largest integer-like key and sorts before text keys."""
        value = {"A": 1, "4294967295": 2, "4294967294": 3}
        assert canonical_json(value) == '{"4294967294":3,"4294967295":2,"A":1}'

    def test_utf16_code_unit_order(self) -> None:
        """An astral key sorts before a high BMP key, following UTF-16 code units."""
        assert canonical_json({"\uff21": 1, "\U0001f600": 2}) == '{"😀":2,"\uff21":1}'

    def test_keys_are_escaped(self) -> None:
        """Object keys are escaped like strings."""
        assert canonical_json({'a"\n': None}) == '{"a\\"\\n":null}'

    def test_null_members_are_kept(self) -> None:
        """Members whose value is None are written as null."""
        assert canonical_json({"a": None}) == '{"a":null}'

    def test_empty_containers(self) -> None:
        """Empty lists, tuples and dicts are written without whitespace."""
        assert canonical_json([[], (), {}]) == "[[],[],{}]"

    def test_nested_structure(self) -> None:
        """Nested containers are written recursively without whitespace."""
        value = {"z": [1, {"y": True, "x": False}], "a": (None, "s")}
        assert canonical_json(value) == '{"a":[null,"s"],"z":[1,{"x":false,"y":true}]}'

    def test_colliding_keys_rejected(self) -> None:
        """Two keys that are the same UTF-16 string once surrogate pairs are joined are refused."""
        with pytest.raises(CanonicalJsonError, match="collide"):
            canonical_json({"\ud83d\ude00": 1, "\U0001f600": 2})


class TestNumbers:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (1.0, "1"),
            (-1.0, "-1"),
            (0.0, "0"),
            (-2.5, "-2.5"),
            (2**60, "1152921504606847000"),
            (-(2**60), "-1152921504606847000"),
            (2**53 + 1, "9007199254740992"),
            (-(2**53), "-9007199254740992"),
            (float(2**53), "9007199254740992"),
            (1e-6, "0.000001"),
            (1.5e-6, "0.0000015"),
            (1e-7, "1e-7"),
            (1.25e-7, "1.25e-7"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (-5e-324, "-5e-324"),
            (123.456, "123.456"),
            (1e100, "1e+100"),
            (2.5e-10, "2.5e-10"),
        ],
    )
    def test_ecmascript_layout(self, value: float, expected: str) -> None:
        """Numbers follow the ECMAScript Number::toString layout."""
        assert canonical_json(value) == expected

    def test_bool_is_not_a_number(self) -> None:
        """Booleans are written as literals even though bool subclasses int."""
        assert canonical_json([True, False, None]) == "[true,false,null]"


class TestRejections:
    @pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -0.0])
    def test_non_finite_and_negative_zero_rejected(self, value: float) -> None:
        """NaN, the infinities and negative zero are refused."""
        with pytest.raises(CanonicalJsonError):
            canonical_json({"n": [value]})

    def test_huge_int_rejected(self) -> None:
        """An integer beyond the double range is refused instead of becoming Infinity."""
        with pytest.raises(CanonicalJsonError, match="out of range"):
            canonical_json(10**400)

    @pytest.mark.parametrize("key", [1, 1.5, None, b"a", ("a",)])
    def test_non_str_keys_rejected(self, key: object) -> None:
        """Object keys other than str are refused."""
        with pytest.raises(CanonicalJsonError, match="keys must be str"):
            canonical_json({key: 1})

    def test_set_rejected(self) -> None:
        """A set is not a JSON value and is refused with its type named."""
        with pytest.raises(CanonicalJsonError, match="set"):
            canonical_json({1, 2})

    @pytest.mark.parametrize("value", [b"bytes", object(), frozenset(), 1j])
    def test_other_types_rejected(self, value: object) -> None:
        """Types outside the JSON data model are refused."""
        with pytest.raises(CanonicalJsonError, match=type(value).__name__):
            canonical_json([value])

    def test_circular_reference_rejected(self) -> None:
        """A container that contains itself is refused."""
        loop: list[object] = []
        loop.append(loop)
        with pytest.raises(CanonicalJsonError, match="circular"):
            canonical_json(loop)

    def test_shared_subtree_allowed(self) -> None:
        """The same object appearing twice without a cycle is written twice."""
        shared = {"a": 1}
        assert canonical_json([shared, shared]) == '[{"a":1},{"a":1}]'

    def test_error_is_value_and_type_error(self) -> None:
        """CanonicalJsonError can be caught as ValueError or as TypeError."""
        assert issubclass(CanonicalJsonError, ValueError)
        assert issubclass(CanonicalJsonError, TypeError)


class TestHashing:
    def test_sha256_hex_lowercase(self) -> None:
        """sha256_hex returns the lowercase hex digest."""
        assert sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

    def test_canonical_hash_composition(self) -> None:
        """canonical_hash is sha256_hex of canonical_bytes."""
        value = {"b": [1.5, "é"], "a": None}
        assert canonical_hash(value) == sha256_hex(canonical_bytes(value))

    def test_canonical_hash_ignores_insertion_order(self) -> None:
        """Dicts with the same members hash the same regardless of insertion order."""
        assert canonical_hash({"a": 1, "b": 2}) == canonical_hash({"b": 2, "a": 1})


class TestProperties:
    @settings(max_examples=200, deadline=None)
    @given(json_values)
    def test_round_trip(self, value: object) -> None:
        """json.loads of the canonical text gives back an equal value."""
        assert _json_equal(json.loads(canonical_json(value)), value)

    @settings(max_examples=200, deadline=None)
    @given(json_values)
    def test_idempotent(self, value: object) -> None:
        """Canonicalising the parsed canonical text reproduces it exactly."""
        text = canonical_json(value)
        assert canonical_json(json.loads(text)) == text

    @settings(max_examples=200, deadline=None)
    @given(finite_floats.filter(lambda x: not x.is_integer()))
    def test_non_integral_float_round_trips(self, value: float) -> None:
        """A non-integral float reads back as exactly the same double."""
        assert float(canonical_json(value)) == value

    @settings(max_examples=200, deadline=None)
    @given(st.text())
    def test_strings_match_python_json_without_surrogates(self, value: str) -> None:
        """Without surrogates, string escaping equals json.dumps with ensure_ascii off."""
        assert canonical_json(value) == json.dumps(value, ensure_ascii=False)

    @settings(max_examples=200, deadline=None)
    @given(st.dictionaries(st.text(), safe_ints, max_size=8))
    def test_output_is_valid_json_object(self, value: dict[str, int]) -> None:
        """The canonical text of a dict parses back to the same members."""
        assert json.loads(canonical_json(value)) == value
