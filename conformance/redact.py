"""Keep secrets out of evidence, without mangling what is not a secret.

A secret's value is masked where it occurs *as a value*:

- passwords inside URLs and DSNs (``scheme://user:password@host``), whatever they are;
- a known secret after a key whose name marks a secret (``PGPASSWORD=...``, ``password=...`` in
  a libpq DSN, ``"token": "..."``, a ``x-...-token:`` header) or after ``Bearer``/``Basic``;
- a known secret that is *strong* -- long or mixed enough that it cannot be an ordinary word --
  anywhere in free text (a token pasted into a message).

A weak secret such as the default password ``postgres`` is therefore never masked inside check
ids, test names, unit names or service names (``health.postgres.accepting[postgres]``,
``postgresql.service``), while ``postgresql://postgres:postgres@...`` still loses its password.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MIN_SCRUB_LENGTH = 4  # shorter "secrets" are too likely to be something else to mask even as values
STRONG_LENGTH = 12  # at least this long (or 8 and mixed) a secret is masked wherever it appears
MASK = "<redacted>"
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s/]+)@")
_SECRET_KEY = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE|CREDENTIAL|_KEY_HEX)", re.IGNORECASE)
# What may precede a secret's value: a secret-named key and its separator (env, DSN, JSON, YAML, header), or an
# HTTP auth scheme. The key is a run of name characters containing a secret word.
_VALUE_CONTEXT = (
    r"(?P<pre>(?:\b[\w.-]*(?:pass(?:word|wd)?|secret|token|api[_-]?key|private|credential|authorization)[\w.-]*"
    r"[\"']?\s*[:=]\s*|\b(?:Bearer|Basic|Token)\s+)[\"']?)"
)
_VALUE_END = r"(?=$|[\s\"'&;,)\]}>])"


def is_secret_key(key: str) -> bool:
    """Whether an environment key's name marks its value as secret."""
    return bool(_SECRET_KEY.search(key))


def is_strong(secret: str) -> bool:
    """Whether ``secret`` is unlike any ordinary word or name: long, or at least 8 characters of 3 kinds."""
    kinds = sum(
        (
            any(c.islower() for c in secret),
            any(c.isupper() for c in secret),
            any(c.isdigit() for c in secret),
            any(not c.isalnum() for c in secret),
        )
    )
    return len(secret) >= STRONG_LENGTH or (len(secret) >= 8 and kinds >= 3)


class Redactor:
    """Scrubs secrets out of strings and JSON-like structures."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = sorted({s for s in secrets if len(s) >= MIN_SCRUB_LENGTH}, key=len, reverse=True)
        self.secrets = known
        self.strong = [s for s in known if is_strong(s)]
        weak = [s for s in known if not is_strong(s)]
        self._in_context = (
            re.compile(_VALUE_CONTEXT + "(?:" + "|".join(re.escape(s) for s in weak) + ")" + _VALUE_END, re.I)
            if weak
            else None
        )

    def text(self, value: str) -> str:
        """Scrub one string."""
        out = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}@", value)
        for secret in self.strong:
            out = out.replace(secret, MASK)
        if self._in_context is not None:
            out = self._in_context.sub(lambda m: f"{m.group('pre')}{MASK}", out)
        return out

    def mask_value(self, key: str, value: str) -> str:
        """Mask ``value`` entirely when ``key`` names a secret, else scrub it."""
        return MASK if is_secret_key(key) and value else self.text(value)

    def scrub(self, value: Any) -> Any:
        """Scrub every string inside a JSON-like structure (a value under a secret-named key is masked whole)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                self.text(str(k)): (
                    MASK
                    if isinstance(v, str) and v and v in self.secrets and is_secret_key(str(k))
                    else self.scrub(v)
                )
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        return value
