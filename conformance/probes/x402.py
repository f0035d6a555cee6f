"""The paid-call probe: the suite is the client of one paid tool call through an x402 gateway.

It spends money, so it runs only when the run allows a spend (``Context.spend_cap_cents``), and
pays only an offer within it. In order:

1. ``GET <gateway><path>`` (``path`` plus ``run_param`` with a value unique to the run, so that the
   gateway, which derives a gate from the URL and the offer, creates this run's own): the first call, expected 402 with the offer and ``x-nooterra-gate-id``;
2. the provider's keyset (the pinned URL) and the API's NooterraPay keyset;
3. unless the offer is above the cap (or there is no offer or gate): the paid retry, the same
   request with ``x-nooterra-gate-id``;
4. the gate state and the receipts of the run (ops token), each read again within the declared
   visibility budget until the record the paid call wrote shows (see `poll_visible`);
5. the replay audit -- the settled gate id replayed once, then gate state and receipts again --
   only when the cap covers a second charge (a deployment that settles twice would take it);
6. the receipt again, by id.

Every request is bounded by the profile's probe settings and recorded, answered or not, as an
`Exchange`; the result is a `PaidCallEvidence`, written as an artifact bundle when the run records
evidence. The probe never judges: `conformance.paidcall` does.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from conformance import paidcall_bundle, x402
from conformance.canonical import sha256_hex
from conformance.errors import ConfigError, ProbeError, SpendNotAllowed
from conformance.paidcall import (
    API_KEYSET,
    FIRST,
    GATE,
    GATE_AFTER,
    PAID,
    PROVIDER_KEYSET,
    RECEIPT_BY_ID,
    RECEIPTS,
    RECEIPTS_AFTER,
    REPLAY,
    Exchange,
    PaidCallEvidence,
    TokenFacts,
)
from conformance.probes.apart import API_VIEW
from conformance.probes.base import Context
from conformance.probes.http import _transport, host_port, tls_failure, tls_reason
from conformance.profile import url_endpoint
from conformance.redact import Redactor

TOKEN_PATH = "gate.authorization.token.value"


def now_iso(at: float | None = None) -> str:
    """UTC ISO 8601 with milliseconds and ``Z`` (JavaScript's ``toISOString``)."""
    moment = time.time() if at is None else at
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))
    return f"{stamp}.{int(moment * 1000) % 1000:03d}Z"


def request(ctx: Context, step: str, url: str, headers: dict[str, str]) -> Exchange:
    """One bounded GET, recorded whatever happens (a failure to observe is kept as the exchange's error).

    The request accepts only the identity encoding: every hash is taken over the body exactly as the gateway
    sent it (``x-nooterra-response-sha256`` covers the uncompressed body), so a compressed answer is a protocol
    error rather than bytes no hash could match.
    """
    s = ctx.settings
    headers = {**headers, "Accept-Encoding": "identity"}
    parts = urlsplit(url)
    port = url_endpoint(url)[1]
    sent, redactions = paidcall_bundle.mask_headers(headers)
    base = Exchange(
        step=step, method="GET", url=url, at=now_iso(), request_headers=sent, redactions=redactions
    )

    def failed(code: str, message: str) -> Exchange:
        return dataclasses.replace(base, error_code=code, error=f"GET {url}: {message}")

    try:
        address, dialed = ctx.dial(parts.hostname or "", port)
    except ProbeError as exc:
        return failed(exc.reason_code, str(exc))
    target = url
    extensions: dict[str, object] = {}
    if (address, dialed) != (parts.hostname, port):  # reached through a forward: to its local end
        target = urlunsplit((parts.scheme, host_port(address, dialed), parts.path or "/", parts.query, ""))
        if parts.scheme == "https":  # TLS still verified for the URL's host
            extensions["sni_hostname"] = parts.hostname
    timeout = httpx.Timeout(
        connect=s.connect_timeout_s, read=s.read_timeout_s, write=s.read_timeout_s, pool=s.connect_timeout_s
    )
    try:
        transport = _transport(time.monotonic() + s.deadline_s, s.ca_file)
    except ProbeError as exc:
        return failed(exc.reason_code, str(exc))
    sent_headers = {"Host": parts.netloc, "User-Agent": "gates-conformance", **headers}
    try:
        with (
            httpx.Client(
                timeout=timeout, follow_redirects=False, trust_env=False, transport=transport
            ) as client,
            client.stream("GET", target, headers=sent_headers, extensions=extensions) as resp,
        ):
            encoding = resp.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                return failed(
                    "probe_protocol_error",
                    f"answered with Content-Encoding {encoding[:40]!r} to a request that accepts only identity",
                )
            chunks: list[bytes] = []
            size = 0
            for chunk in resp.iter_raw():
                size += len(chunk)
                if size > s.max_body_bytes:
                    return failed(
                        "probe_response_too_large", f"body exceeded the {s.max_body_bytes}-byte cap"
                    )
                chunks.append(chunk)
            return dataclasses.replace(
                base,
                status=resp.status_code,
                headers=tuple((k, v) for k, v in resp.headers.multi_items()),
                body=b"".join(chunks),
            )
    except httpx.TimeoutException as exc:
        return failed("probe_timeout", f"timed out ({type(exc).__name__})")
    except (httpx.ConnectError, httpx.NetworkError) as exc:
        tls = tls_failure(exc)
        if tls is not None:
            return failed("probe_tls_error", f"TLS handshake failed: {tls_reason(tls)}")
        return failed("probe_unreachable", str(exc) or type(exc).__name__)
    except (httpx.ProtocolError, httpx.DecodingError, httpx.InvalidURL) as exc:
        return failed("probe_protocol_error", str(exc) or type(exc).__name__)


def _found(ex: Exchange) -> bool:
    return ex.status == 200


def _listed(ex: Exchange) -> bool:
    body = ex.json() if ex.status == 200 else None
    found = body.get("receipts") if isinstance(body, dict) else None
    return isinstance(found, list) and len(found) > 0


def poll_visible(
    ctx: Context,
    step: str,
    url: str,
    headers: dict[str, str],
    visible: Callable[[Exchange], bool],
    budget_s: float,
) -> tuple[Exchange, dict[str, Any]]:
    """GET ``url`` until ``visible`` holds or ``budget_s`` is spent; the last answer and how long it took.

    Upstream's API serves gates and receipts from an in-memory view that every ``/ops`` request (and
    its outbox workers) reloads from PostgreSQL, emptying it first (``src/api/app.js:37760-37761``,
    ``src/db/store-pg.js:150-194``): a committed record may be briefly invisible to a concurrent read.
    A record that does not show within the budget is reported as the last answer said.
    """
    started = time.monotonic()
    pause = 0.05
    attempts = 0
    while True:
        ex = request(ctx, step, url, headers)
        attempts += 1
        waited = time.monotonic() - started
        if visible(ex) or ex.status is None or waited + pause > budget_s:
            break
        time.sleep(pause)
        pause = min(pause * 2, 0.4)
    return ex, {
        "attempts": attempts,
        "waitedMs": int(waited * 1000),
        "budgetMs": int(budget_s * 1000),
        "visible": visible(ex),
    }


def _without_token(ex: Exchange) -> tuple[Exchange, str | None]:
    """The gate-state exchange with the NooterraPay token's value removed from the body, and that value."""
    body = ex.json()
    gate = body.get("gate") if isinstance(body, dict) else None
    auth = gate.get("authorization") if isinstance(gate, dict) else None
    token = auth.get("token") if isinstance(auth, dict) else None
    if not isinstance(token, dict) or not isinstance(token.get("value"), str):
        return ex, None
    value = token["value"]
    token["value"] = paidcall_bundle.REDACTED
    clean = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Exchange(
        step=ex.step, method=ex.method, url=ex.url, at=ex.at, request_headers=ex.request_headers, status=ex.status,
        headers=ex.headers, body=clean, redactions=(*ex.redactions, f"response.body.{TOKEN_PATH}"),
    ), value  # fmt: skip


def _token_facts(value: str, keyset_ex: Exchange | None, used_at: str) -> TokenFacts:
    try:
        decoded = x402.decode_pay_token(value)
    except x402.VerificationError as exc:
        return TokenFacts(kid="", payload={}, sha256=sha256_hex(value.encode()), canonical=False, verified=False,
                          code=exc.code, message=exc.message)  # fmt: skip
    keyset = keyset_ex.json() if keyset_ex is not None and keyset_ex.status == 200 else None
    parsed = x402.parse_iso(used_at)
    code: str | None = None
    message = f"verified under API keyset key {decoded.kid}"
    try:
        if keyset is None or parsed is None:
            raise x402.VerificationError("NOOTERRA_PAY_KEYSET_UNAVAILABLE", "the API keyset was not fetched")
        x402.verify_pay_token(value, keyset, now=parsed.timestamp())
    except x402.VerificationError as exc:
        code, message = exc.code, exc.message
    verified = code is None
    return TokenFacts(kid=decoded.kid, payload=decoded.payload, sha256=decoded.sha256, canonical=decoded.canonical,
                      verified=verified, code=code, message=message)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class PaidToolCall:
    """One paid call of ``path`` through ``gateway`` (see the module docstring)."""

    name: str
    gateway: str
    path: str
    api: str
    upstream: str
    provider_keyset: str
    pinned_key_ids: tuple[str, ...]
    holdback_bps: int
    tenant: str
    ops_token: str | None = field(default=None, repr=False)
    run_param: str = ""
    visibility_budget_s: float = 3.0

    def sent_path(self) -> str:
        """The path this run calls: the declared one, plus ``run_param`` with a value no other run uses."""
        if not self.run_param:
            return self.path
        nonce = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(6)}"
        return f"{self.path}{'&' if '?' in self.path else '?'}{self.run_param}={nonce}"

    def observe(self, ctx: Context) -> PaidCallEvidence:
        """Make the paid call (within the run's spend allowance), record everything, write the bundle.

        No ``/ops`` probe of the suite runs meanwhile (`conformance.probes.apart`).
        """
        with API_VIEW:
            return self._call(ctx)

    def _call(self, ctx: Context) -> PaidCallEvidence:
        cap = ctx.spend_cap_cents
        if cap is None:
            raise SpendNotAllowed(
                "this run allows no spending: a paid call runs only with --allow-spend-cents"
            )
        tenant = {"x-proxy-tenant-id": self.tenant}
        ops = {**tenant, **({"x-proxy-ops-token": self.ops_token} if self.ops_token else {})}
        exchanges: list[Exchange] = []
        path = self.sent_path()

        def call(step: str, url: str, headers: dict[str, str]) -> Exchange:
            exchanges.append(request(ctx, step, url, headers))
            return exchanges[-1]

        visibility: dict[str, dict[str, Any]] = {}

        def read(
            step: str,
            url: str,
            headers: dict[str, str],
            visible: Callable[[Exchange], bool],
            *,
            record: bool = True,
        ) -> Exchange:
            """Read a record the deployment has just written, again within the budget until it shows."""
            ex, seen = poll_visible(ctx, step, url, headers, visible, self.visibility_budget_s)
            visibility[step] = seen
            if record:
                exchanges.append(ex)
            return ex

        first = call(FIRST, self.gateway + path, tenant)
        gate_id = first.header("x-nooterra-gate-id") if first.status == 402 else None
        refused: dict[str, str] | None = None
        replay_skipped: dict[str, str] | None = None
        token_value: str | None = None
        token: TokenFacts | None = None
        if first.status is not None:
            call(PROVIDER_KEYSET, self.provider_keyset, {})
            api_keyset = call(API_KEYSET, self.api + "/.well-known/nooterra-keys.json", tenant)
            refused, amount = self._refusal(first, gate_id, cap)
            if refused is None and gate_id:
                paid = call(PAID, self.gateway + path, {**tenant, "x-nooterra-gate-id": gate_id})
                gate_url = f"{self.api}/x402/gate/{quote(gate_id, safe='')}"
                receipts_url = f"{self.api}/x402/receipts?runId={quote('x402_' + gate_id, safe='')}"
                gate_ex, token_value = _without_token(read(GATE, gate_url, ops, _found))
                exchanges[-1] = gate_ex
                if token_value is not None:
                    token = _token_facts(token_value, api_keyset, paid.at)
                # a settled paid call has a receipt; one the gateway could not settle may have none
                receipts = read(
                    RECEIPTS, receipts_url, ops, _listed if 200 <= (paid.status or 0) < 300 else _found
                )
                if 2 * amount <= cap:
                    call(REPLAY, self.gateway + path, {**tenant, "x-nooterra-gate-id": gate_id})
                    exchanges.append(_without_token(read(GATE_AFTER, gate_url, ops, _found, record=False))[0])
                    read(RECEIPTS_AFTER, receipts_url, ops, _listed if _listed(receipts) else _found)
                else:
                    replay_skipped = {
                        "code": "spend_not_allowed",
                        "message": f"replaying the settled gate would be charged again by a deployment that settles twice: "
                        f"the replay audit needs --allow-spend-cents {2 * amount} (twice the {amount}-cent offer), this run "
                        f"allows {cap}",
                    }
                receipt_id = _single_receipt_id(receipts)
                if receipt_id is not None:
                    read(RECEIPT_BY_ID, f"{self.api}/x402/receipts/{quote(receipt_id, safe='')}", ops, _found)
        evidence = PaidCallEvidence(
            name=self.name, gateway_url=self.gateway, path=path, api_url=self.api, upstream_url=self.upstream,
            provider_keyset_url=self.provider_keyset, pinned_key_ids=self.pinned_key_ids, holdback_bps=self.holdback_bps,
            spend_cap_cents=cap, tenant=self.tenant, started_at=first.at, gate_id=gate_id, exchanges=tuple(exchanges),
            refused=refused, replay_skipped=replay_skipped, token=token, token_value=token_value,
            visibility=visibility or None,
        )  # fmt: skip
        if ctx.evidence_dir is not None:
            secrets = (
                set(ctx.secrets)
                | ({token_value} if token_value else set())
                | ({self.ops_token} if self.ops_token else set())
            )
            try:
                paidcall_bundle.write(evidence, ctx.evidence_dir, Redactor(secrets))
            except (OSError, ConfigError) as exc:
                raise ProbeError(
                    f"the paid call was made (gate {gate_id}) but its evidence bundle could not be written: {exc}"
                ) from exc
        return evidence

    def _refusal(self, first: Exchange, gate_id: str | None, cap: int) -> tuple[dict[str, str] | None, int]:
        """Why the suite will not pay (None when it will), and the offer's amount."""
        if first.status != 402:
            return {
                "code": "no_offer",
                "message": f"the first call answered {first.status}, not a 402 offer",
            }, 0
        raw = first.header("x-payment-required") or first.header("payment-required")
        try:
            amount = x402.offer_amount(x402.parse_payment_required(raw)) if raw else None
        except x402.VerificationError:
            amount = None
        if amount is None:
            return {"code": "no_offer", "message": "the 402 carries no parseable offer with an amount"}, 0
        if amount > cap:
            return {"code": "offer_above_spend_cap",
                    "message": f"the offer asks {amount} cents, above the {cap} this run allows (--allow-spend-cents)"}, amount  # fmt: skip
        if not gate_id:
            return {
                "code": "no_gate",
                "message": "the gateway created no gate (no x-nooterra-gate-id) to pay",
            }, amount
        return None, amount


def _single_receipt_id(ex: Exchange) -> str | None:
    body = ex.json() if ex.status == 200 else None
    found = body.get("receipts") if isinstance(body, dict) else None
    if isinstance(found, list) and len(found) == 1 and isinstance(found[0], dict):
        rid = found[0].get("receiptId")
        return rid if isinstance(rid, str) and rid else None
    return None
