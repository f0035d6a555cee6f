"""What one paid call through an x402 gateway left behind: the exchanges made, in order, and the
context they were made in (plain data; the probe builds it live, the bundle loader from files)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from conformance.errors import (
    ProbeError,
    ProbeProtocolError,
    ProbeResponseTooLarge,
    ProbeTimeout,
    ProbeTlsError,
    ProbeUnreachable,
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
PROBE_ERRORS: dict[str, type[ProbeError]] = {
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
