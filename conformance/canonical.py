"""Canonical JSON and hashing, byte-for-byte compatible with the upstream JavaScript canonicalizer.

The upstream implementation is ``JSON.stringify`` of a deep copy whose object keys were sorted, so
the text produced here follows ECMAScript rules rather than Python's ``json`` module:

* strings use ``JSON.stringify`` escaping: ``"`` and ``\\``, the short escapes ``\\b \\f \\n \\r \\t``,
  other C0 controls as lowercase ``\\u00xx`` and lone surrogates as lowercase ``\\udxxx``; everything
  else, including ``/``, U+007F and astral characters, is written raw;
* object members are ordered with integer-like keys (canonical array indices below 2**32 - 1) first
  in ascending numeric order, then all other keys by UTF-16 code units;
* numbers are formatted with ECMAScript ``Number::toString``; NaN, the infinities and negative zero
  are refused.

Every refusal raises :class:`CanonicalJsonError`.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re

__all__ = [
    "CanonicalJsonError",
    "canonical_bytes",
    "canonical_hash",
    "canonical_json",
    "sha256_hex",
]

_MAX_SAFE_INTEGER = 2**53
_MAX_ARRAY_INDEX = 2**32 - 1  # exclusive bound: "4294967295" is not an array index in ECMAScript

_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}

# A surrogate pair stored as two code points is matched before a lone surrogate so that it is
# joined back into the astral character it encodes.
_NEEDS_ESCAPE = re.compile('[\x00-\x1f"\\\\]|[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]')
_INTEGER_LIKE = re.compile("0|[1-9][0-9]*")


class CanonicalJsonError(ValueError, TypeError):
    """A value cannot be written as canonical JSON.

    Raised for NaN, the infinities, negative zero, integers too large for a double, unsupported
    types, non-string object keys, keys that collide once surrogate pairs are joined, and circular
    references. It subclasses :class:`ValueError`, and also :class:`TypeError` so that callers
    expecting the ``TypeError`` of a type mismatch still catch it.
    """


def _escape_match(match: re.Match[str]) -> str:
    text = match.group()
    if len(text) == 2:
        high, low = ord(text[0]), ord(text[1])
        return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
    short = _SHORT_ESCAPES.get(text)
    if short is not None:
        return short
    return f"\\u{ord(text):04x}"


def _quote(text: str) -> str:
    return '"' + _NEEDS_ESCAPE.sub(_escape_match, text) + '"'


def _format_finite_magnitude(magnitude: float) -> str:
    """Format a positive finite double with the layout of ECMAScript ``Number::toString``."""
    mantissa, _, exponent_text = repr(magnitude).partition("e")
    exponent = int(exponent_text) if exponent_text else 0
    int_part, _, frac_part = mantissa.partition(".")
    digits = int_part + frac_part
    # value == 0.<digits> * 10**point
    point = len(int_part) + exponent
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    s = stripped.rstrip("0")
    k = len(s)
    n = point
    if k <= n <= 21:
        return s + "0" * (n - k)
    if 0 < n <= 21:
        return s[:n] + "." + s[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + s
    e = n - 1
    sign = "+" if e >= 0 else "-"
    head = s[0] + ("." + s[1:] if k > 1 else "")
    return f"{head}e{sign}{abs(e)}"


def _format_float(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        raise CanonicalJsonError(f"{value!r} cannot be written as canonical JSON")
    if value == 0:
        if math.copysign(1.0, value) < 0:
            raise CanonicalJsonError("negative zero cannot be written as canonical JSON")
        return "0"
    if value.is_integer() and abs(value) <= _MAX_SAFE_INTEGER:
        return str(int(value))
    if value < 0:
        return "-" + _format_finite_magnitude(-value)
    return _format_finite_magnitude(value)


def _format_int(value: int) -> str:
    number = int(value)
    if abs(number) <= _MAX_SAFE_INTEGER:
        return str(number)
    try:
        as_double = float(number)
    except OverflowError:
        raise CanonicalJsonError(f"integer {number} is out of range for a double") from None
    return _format_float(as_double)


def _is_integer_like(key: str) -> bool:
    return _INTEGER_LIKE.fullmatch(key) is not None and int(key) < _MAX_ARRAY_INDEX


def _ordered_keys(obj: dict[object, object]) -> list[str]:
    index_keys: list[tuple[int, str]] = []
    other_keys: list[tuple[bytes, str]] = []
    for key in obj:
        if not isinstance(key, str):
            raise CanonicalJsonError(f"object keys must be str, not {type(key).__name__}")
        if _is_integer_like(key):
            index_keys.append((int(key), key))
        else:
            other_keys.append((key.encode("utf-16-be", "surrogatepass"), key))
    index_keys.sort()
    other_keys.sort()
    for (left, _), (right, _) in itertools.pairwise(other_keys):
        if left == right:
            raise CanonicalJsonError("object keys collide once surrogate pairs are joined")
    return [key for _, key in index_keys] + [key for _, key in other_keys]


def _write(value: object, out: list[str], active: set[int]) -> None:
    if value is None:
        out.append("null")
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, str):
        out.append(_quote(value))
    elif isinstance(value, int):
        out.append(_format_int(value))
    elif isinstance(value, float):
        out.append(_format_float(float(value)))
    elif isinstance(value, list | tuple | dict):
        marker = id(value)
        if marker in active:
            raise CanonicalJsonError("circular reference cannot be written as canonical JSON")
        active.add(marker)
        if isinstance(value, dict):
            out.append("{")
            for position, key in enumerate(_ordered_keys(value)):
                if position:
                    out.append(",")
                out.append(_quote(key))
                out.append(":")
                _write(value[key], out, active)
            out.append("}")
        else:
            out.append("[")
            for position, item in enumerate(value):
                if position:
                    out.append(",")
                _write(item, out, active)
            out.append("]")
        active.discard(marker)
    else:
        raise CanonicalJsonError(f"values of type {type(value).__name__} cannot be written as canonical JSON")


def canonical_json(value: object) -> str:
    """Return the canonical JSON text of ``value`` (None, bool, int, float, str, list, tuple, dict)."""
    out: list[str] = []
    _write(value, out, set())
    return "".join(out)


def canonical_bytes(value: object) -> bytes:
    """Return the UTF-8 encoding of :func:`canonical_json` of ``value``."""
    return canonical_json(value).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """Return the SHA-256 digest of ``data`` as 64 lowercase hex characters."""
    return hashlib.sha256(data).hexdigest()


def canonical_hash(value: object) -> str:
    """Return ``sha256_hex(canonical_bytes(value))``, the upstream hash of a JSON value."""
    return sha256_hex(canonical_bytes(value))
