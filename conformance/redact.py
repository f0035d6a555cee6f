"""Keep secrets out of evidence.

Three layers: values of secret variables are replaced wherever they occur (when at least
`MIN_SCRUB_LENGTH` characters long, so that a short word such as a default password does not
mangle unrelated text); passwords inside URLs (``scheme://user:password@host``) are masked;
and values of keys whose name says they hold a secret are masked by `mask_value`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MIN_SCRUB_LENGTH = 6
MASK = "<redacted>"
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s/]+)@")
_SECRET_KEY = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE|CREDENTIAL|_KEY_HEX)", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    """Whether an environment key's name marks its value as secret."""
    return bool(_SECRET_KEY.search(key))


class Redactor:
    """Scrubs secrets out of strings and JSON-like structures."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= MIN_SCRUB_LENGTH}, key=len, reverse=True)

    def text(self, value: str) -> str:
        """Scrub one string."""
        out = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}@", value)
        for secret in self.secrets:
            out = out.replace(secret, MASK)
        return out

    def mask_value(self, key: str, value: str) -> str:
        """Mask ``value`` entirely when ``key`` names a secret, else scrub it."""
        return MASK if is_secret_key(key) and value else self.text(value)

    def scrub(self, value: Any) -> Any:
        """Scrub every string inside a JSON-like structure."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        return value
