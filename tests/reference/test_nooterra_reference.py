"""Self-tests of the Nooterra loopback reference: real HTTP, real PostgreSQL rows, offline-verifiable receipts.

The healthy instance is started once; every fault gets an instance of its own and a proof that it
changes the behaviour it names. Hashes and signatures are recomputed here with
`conformance.canonical` and `cryptography` directly, independently of the reference's own helpers,
which are in turn proven against the upstream vectors.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from conformance.canonical import canonical_hash, canonical_json
from fixtures.nooterra import bundle_reference, crypto
from fixtures.nooterra import deployment as dep
from fixtures.nooterra.live_faults import FAULTS, Fault
from fixtures.procs import Proc, alive
from gates import report as reports

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
VECTORS = json.loads((Path(__file__).parent / "data" / "nooterra-crypto-vectors.json").read_text())["crypto"]
TOOL = "/exa/search?q=gates&numResults=2"
EXPECTED_HOLDBACK = dep.PRICE_CENTS * dep.HOLDBACK_BPS // 10_000  # floor(500 * 275 / 10000) = 13
REQUIRED_METRICS = (
    "replay_mismatch_gauge",
    "disputes_over_sla_gauge",
    "arbitration_over_sla_gauge",
    "settlement_holds_over_24h_gauge",
    "worker_outbox_pending_total_gauge",
    "worker_deliveries_pending_total_gauge",
)
SETTLEMENT_HEADERS = (
    "x-nooterra-gate-id",
    "x-nooterra-response-sha256",
    "x-nooterra-settlement-status",
    "x-nooterra-released-amount-cents",
    "x-nooterra-refunded-amount-cents",
    "x-nooterra-verification-status",
    "x-nooterra-policy-decision",
    "x-nooterra-reason-code",
    "x-nooterra-decision-id",
    "x-nooterra-policy-hash",
    "x-nooterra-policy-version",
    "x-nooterra-policy-verification-method-hash",
    "x-nooterra-policy-evaluation-hash",
    "x-nooterra-holdback-status",
    "x-nooterra-holdback-amount-cents",
)


@dataclass(frozen=True, slots=True)
class Instance:
    """A running reference: its state directory, `gates run` arguments and ports."""

    state: Path
    args: list[str]
    ports: dict[str, int]

    def url(self, name: str, path: str = "") -> str:
        """URL of a service's path."""
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def db(self) -> psycopg.Connection[Any]:
        """A connection to the instance's database, as the application role, on its schema."""
        dsn = f"host=127.0.0.1 port={self.ports['postgres']} user={dep.DB_USER} password={dep.DB_PASSWORD} dbname={dep.DATABASE}"
        return psycopg.connect(dsn, options=f"-c search_path={dep.SCHEMA}", autocommit=True)

    def procs(self) -> list[Proc]:
        """The processes the state file records."""
        return [Proc.from_json(p) for p in json.loads((self.state / "state.json").read_text())["processes"]]


def start(name: str, fault: Fault | None = None) -> Instance:
    """Start an instance under a `nooterra-selftest-*` state directory."""
    state = dep.default_state_dir(f"selftest-{WORKER}-{name}")
    dep.down(state)
    args = dep.up(state, fault=fault.inject if fault else None, fault_id=fault.id if fault else None)
    ports = json.loads((state / "state.json").read_text())["ports"]
    return Instance(state=state, args=args, ports=ports)


@pytest.fixture(scope="module")
def healthy() -> Iterator[Instance]:
    """The healthy reference deployment, started once for the module."""
    inst = start("healthy")
    try:
        yield inst
    finally:
        dep.down(inst.state)


OPS = {"x-proxy-ops-token": dep.OPS_TOKEN}
FINANCE = {"x-proxy-ops-token": dep.FINANCE_TOKEN}


def get(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """One GET with a short timeout."""
    return httpx.get(url, headers=headers, timeout=10.0)


def metric_names(text: str) -> set[str]:
    """Names that start a non-comment line of a Prometheus exposition."""
    return {
        line.split("{", 1)[0].split(" ", 1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def metric(text: str, series: str) -> float | None:
    """The value of one exact series, or None when absent."""
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == series:
            return float(value)
    return None


def burst(url: str, n: int, headers: dict[str, str]) -> list[httpx.Response]:
    """``n`` sequential GETs on one connection."""
    with httpx.Client(timeout=10.0) as client:
        return [client.get(url, headers=headers) for _ in range(n)]


@dataclass(frozen=True, slots=True)
class PaidCall:
    """The two calls of one paid tool call through the gateway."""

    offer: httpx.Response
    paid: httpx.Response

    @property
    def gate_id(self) -> str:
        """The gate the offer created."""
        return self.offer.headers["x-nooterra-gate-id"]


def paid_call(inst: Instance, path: str = TOOL) -> PaidCall:
    """First call (402 + gate id), then the retry with the gate id."""
    offer = get(inst.url("gateway", path))
    assert offer.status_code == 402, offer.text
    gate = offer.headers.get("x-nooterra-gate-id")
    assert gate, dict(offer.headers)
    return PaidCall(offer, get(inst.url("gateway", path), {"x-nooterra-gate-id": gate}))


def provider_keys(inst: Instance) -> dict[str, Ed25519PublicKey]:
    """The upstream's published provider keys by kid."""
    body = get(inst.url("upstream", "/.well-known/nooterra-provider-keys.json")).json()
    return {
        k["kid"]: Ed25519PublicKey.from_public_bytes(
            base64.urlsafe_b64decode(k["x"] + "=" * (-len(k["x"]) % 4))
        )
        for k in body["keys"]
    }


def pem_key_id(key: Ed25519PublicKey) -> str:
    """``key_`` + the first 24 hex of sha256 of the trimmed SPKI PEM."""
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "key_" + hashlib.sha256(pem.decode().strip().encode()).hexdigest()[:24]


def provider_signature_valid(key: Ed25519PublicKey, headers: httpx.Headers, response_sha256: str) -> bool:
    """Verify the provider headers' Ed25519 signature over H(ToolProviderSignaturePayload.v1)."""
    payload = canonical_hash(
        {
            "schemaVersion": "ToolProviderSignaturePayload.v1",
            "responseHash": response_sha256,
            "nonce": headers["x-nooterra-provider-nonce"],
            "signedAt": headers["x-nooterra-provider-signed-at"],
        }
    )
    try:
        key.verify(base64.b64decode(headers["x-nooterra-provider-signature"]), bytes.fromhex(payload))
    except InvalidSignature:
        return False
    return True


def receipts(inst: Instance, gate_id: str) -> list[dict[str, Any]]:
    """The receipts of a gate's run."""
    resp = get(inst.url("api", f"/x402/receipts?runId=x402_{gate_id}"), OPS)
    assert resp.status_code == 200, resp.text
    found: list[dict[str, Any]] = resp.json()["receipts"]
    return found


def without(record: dict[str, Any], *keys: str) -> dict[str, Any]:
    """A copy of ``record`` without ``keys``."""
    return {k: v for k, v in record.items() if k not in keys}


# --- the reference's helpers against the upstream vectors --------------------------------------


class TestVectors:
    """`fixtures.nooterra.crypto` reproduces every upstream hash, key id and signature check."""

    def test_key_id_and_jwk(self) -> None:
        """The key id of the demo PEM and its JWK ``x`` match the vectors."""
        assert crypto.key_id_from_pem(VECTORS["publicKeyPem"]) == VECTORS["keyIdFromPem"]
        assert crypto.jwk_x(VECTORS["publicKeyPem"]) == VECTORS["nooterraPayKeyset"]["keys"][0]["x"]
        assert crypto.pem_from_jwk_x(VECTORS["nooterraPayKeyset"]["keys"][0]["x"]) == VECTORS["publicKeyPem"]

    def test_decision_and_receipt_hashes(self) -> None:
        """decisionHash and receiptHash recompute, and the kernel invariants hold for the vector pair."""
        assert crypto.decision_hash(VECTORS["decisionRecord"]) == VECTORS["decisionRecord"]["decisionHash"]
        assert (
            crypto.receipt_hash(VECTORS["settlementReceipt"]) == VECTORS["settlementReceipt"]["receiptHash"]
        )
        assert crypto.kernel_errors(VECTORS["decisionRecord"], VECTORS["settlementReceipt"]) == []
        tampered = {**VECTORS["settlementReceipt"], "releasedAmountCents": 499}
        assert "settlement_receipt_hash_mismatch" in crypto.kernel_errors(VECTORS["decisionRecord"], tampered)

    def test_provider_signature(self) -> None:
        """The response hash of the vector body and its ToolProviderSignature.v1 verify; a flipped bit does not."""
        body = json.dumps(VECTORS["providerResponseBody"]).encode()
        assert crypto.response_hash(body, "application/json") == VECTORS["providerResponseHash"]
        crypto.verify_provider_signature(VECTORS["providerSignature"], VECTORS["publicKeyPem"])
        bad = dict(VECTORS["providerSignature"], nonce="00112233445566778899aabbccddeefe")
        with pytest.raises(crypto.SignatureError):
            crypto.verify_provider_signature(bad, VECTORS["publicKeyPem"])

    def test_pay_token(self) -> None:
        """The NooterraPay vector verifies inside its window, yields its payload and sha256, and expires after."""
        token = crypto.verify_pay_token(
            VECTORS["nooterraPayToken"], VECTORS["nooterraPayKeyset"], now=1774396900
        )
        assert token.payload == VECTORS["nooterraPayEnvelope"]["payload"]
        assert token.sha256 == VECTORS["nooterraPayTokenSha256"]
        assert canonical_hash(token.payload) == VECTORS["nooterraPayPayloadHash"]
        assert (
            crypto.b64url(canonical_json(VECTORS["nooterraPayEnvelope"]).encode())
            == VECTORS["nooterraPayToken"]
        )
        with pytest.raises(crypto.SignatureError, match="NOOTERRA_PAY_EXPIRED"):
            crypto.verify_pay_token(VECTORS["nooterraPayToken"], VECTORS["nooterraPayKeyset"], now=1774397101)

    def test_request_binding(self) -> None:
        """The request-binding example recomputes."""
        ex = VECTORS["requestBindingExample"]
        assert (
            crypto.request_binding_sha256(ex["method"], ex["host"], ex["pathWithQuery"])
            == ex["requestBindingSha256"]
        )

    def test_minted_token_round_trips(self) -> None:
        """A token minted by the reference's signer verifies with the same algorithm the vector does."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate()
        pem = crypto.public_pem(key.public_key())
        payload = {"iss": "nooterra", "aud": "p", "payeeProviderId": "p", "amountCents": 1, "currency": "USD",
                   "iat": 100, "exp": 400}  # fmt: skip
        token = crypto.mint_pay_token(key, payload)
        assert crypto.verify_pay_token(token, {"keys": [crypto.jwk(pem)]}, now=200).payload == payload


# --- the healthy deployment -------------------------------------------------------------------


class TestHealth:
    """Health bodies, the auth-mode proxy and the database behind /healthz."""

    def test_run_arguments(self, healthy: Instance) -> None:
        """`up` returns `gates run` arguments naming the profile and every port."""
        assert healthy.args[:4] == ["--profile", "nooterra", "--gate", "production-readiness"]
        for name in ("api", "magic_link", "gateway", "upstream", "postgres"):
            assert f"ports.{name}={healthy.ports[name]}" in healthy.args
        # the ops and finance tokens reach a run through the environment only (dep.ENVIRONMENT)
        assert dep.OPS_TOKEN not in " ".join(healthy.args)
        assert dep.FINANCE_TOKEN not in " ".join(healthy.args)

    def test_api_healthz(self, healthy: Instance) -> None:
        """The API's /healthz is 200 with ok and dbOk true and scoped ops auth."""
        resp = get(healthy.url("api", "/healthz"))
        assert resp.status_code == 200
        body = resp.json()
        assert body["ok"] is True
        assert body["dbOk"] is True
        assert body["opsAuth"] == {"mode": "scoped", "scopedTokensCount": 2, "scopedTokensEmptyScopesCount": 0,
                                   "effectiveTokensCount": 2}  # fmt: skip
        assert resp.headers["x-nooterra-protocol"] == "1.0"

    def test_healthz_really_queries_the_database(self, healthy: Instance) -> None:
        """/healthz turns 503 dbOk false while the database refuses the API's connections, and 200 again after."""
        dsn = f"host=127.0.0.1 port={healthy.ports['postgres']} user=postgres password={dep.SUPERUSER_PASSWORD} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"ALTER DATABASE {dep.DATABASE} WITH ALLOW_CONNECTIONS false")
            try:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (dep.DATABASE,),
                )
                for _ in range(3):  # the pooled connection is found dead, then a new one is refused
                    resp = get(healthy.url("api", "/healthz"))
                    assert resp.status_code == 503
                    assert (resp.json()["ok"], resp.json()["dbOk"]) == (False, False)
            finally:
                admin.execute(f"ALTER DATABASE {dep.DATABASE} WITH ALLOW_CONNECTIONS true")
        resp = get(healthy.url("api", "/healthz"))
        assert (resp.status_code, resp.json()["dbOk"]) == (200, True)

    def test_magic_link_healthz(self, healthy: Instance) -> None:
        """magic-link's /healthz is 200 over a writable, durable data directory."""
        resp = get(healthy.url("magic_link", "/healthz"))
        assert resp.status_code == 200
        body = resp.json()
        assert body["ok"] is True
        assert body["dataDirWritable"] is True
        assert body["requireDurableDataDir"] is True
        assert body["dataDirLikelyEphemeral"] is False

    def test_gateway_and_upstream_healthz(self, healthy: Instance) -> None:
        """The gateway and the upstream answer /healthz 200 {"ok":true}."""
        for name in ("gateway", "upstream"):
            resp = get(healthy.url(name, "/healthz"))
            assert (resp.status_code, resp.json()) == (200, {"ok": True})

    def test_auth_mode_through_the_api(self, healthy: Instance) -> None:
        """/v1/public/auth-mode on the API host is proxied to magic-link: 200 with a string authMode."""
        resp = get(healthy.url("api", "/v1/public/auth-mode"))
        assert resp.status_code == 200
        body = resp.json()
        assert body["schemaVersion"] == "MagicLinkAuthMode.v1"
        assert body["authMode"] == "hybrid"


class TestOpsSurface:
    """Metrics and ops status behind scoped tokens, rate limits and quotas."""

    def test_metrics_need_ops_read(self, healthy: Instance) -> None:
        """/metrics is 403 FORBIDDEN without a token and with a finance-only token."""
        for headers in ({}, FINANCE, {"x-proxy-ops-token": "wrong"}):
            resp = get(healthy.url("api", "/metrics"), headers)
            assert resp.status_code == 403
            assert resp.json()["code"] == "FORBIDDEN"

    def test_metrics_series(self, healthy: Instance) -> None:
        """With ops_read, /metrics serves the required series and a fresh, successful run of every maintenance job."""
        kinds = ("retention_cleanup", "finance_reconcile", "money_rails_reconcile")

        def fresh(text: str) -> bool:
            for kind in kinds:
                last = metric(text, f'maintenance_last_success_unixtime{{kind="{kind}"}}')
                if last is None or time.time() - last > 30:
                    return False
                if metric(text, f'maintenance_last_run_ok_gauge{{kind="{kind}"}}') != 1:
                    return False
            return True

        # the maintenance process runs every few seconds; an earlier test may have cut its database off
        assert _wait_for(lambda: fresh(get(healthy.url("api", "/metrics"), OPS).text))
        resp = get(healthy.url("api", "/metrics"), OPS)
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert set(REQUIRED_METRICS) <= metric_names(resp.text)
        assert metric(resp.text, "replay_mismatch_gauge") == 0

    def test_ops_status_with_finance_scope(self, healthy: Instance) -> None:
        """/ops/status accepts finance_read and shows both reconcilers enabled and succeeding."""
        assert get(healthy.url("api", "/ops/status")).status_code == 403
        resp = get(healthy.url("api", "/ops/status"), FINANCE)
        assert resp.status_code == 200
        maintenance = resp.json()["maintenance"]
        for name in ("financeReconciliation", "moneyRailReconciliation"):
            assert maintenance[name]["enabled"] is True
            assert maintenance[name]["lastRunOk"] is True
            assert maintenance[name]["lastSuccessAt"] is not None

    def test_burst_gets_429_with_retry_after(self, healthy: Instance) -> None:
        """A burst over the tenant limit gets 429 RATE_LIMITED with retry-after, never a 5xx; /healthz is exempt."""
        answers = burst(healthy.url("api", "/ops/status"), 120, {**OPS, "x-proxy-tenant-id": "tenant_burst"})
        statuses = {r.status_code for r in answers}
        assert statuses == {200, 429}
        limited = [r for r in answers if r.status_code == 429]
        assert all(r.json()["code"] == "RATE_LIMITED" for r in limited)
        assert all(int(r.headers["retry-after"]) >= 1 for r in limited)
        exempt = burst(healthy.url("api", "/healthz"), 80, {"x-proxy-tenant-id": "tenant_burst"})
        assert {r.status_code for r in exempt} == {200}

    def test_open_gate_quota(self, healthy: Instance) -> None:
        """Creating open gates beyond PROXY_QUOTA_MAX_OPEN_JOBS answers 429 TENANT_QUOTA_EXCEEDED."""
        tenant, payer = "tenant_quota", "agt_quota_payer"
        with healthy.db() as conn:
            conn.execute("INSERT INTO wallets (tenant_id, agent_id, currency, available_cents) VALUES (%s, %s, 'USD', 100000)",
                         (tenant, payer))  # fmt: skip
            conn.execute("INSERT INTO ledger_entries (tenant_id, agent_id, currency, available_delta, escrow_delta, reason)"
                         " VALUES (%s, %s, 'USD', 100000, 0, 'funding')", (tenant, payer))  # fmt: skip
        headers = {**OPS, "x-proxy-tenant-id": tenant, "x-nooterra-protocol": "1.0"}
        body = {
            "payerAgentId": payer,
            "payeeAgentId": "agt_quota_payee",
            "amountCents": 10,
            "currency": "USD",
        }
        limit = int(dep.QUOTAS["PROXY_QUOTA_MAX_OPEN_JOBS"])
        with httpx.Client(timeout=10.0) as client:
            codes = [
                client.post(healthy.url("api", "/x402/gate/create"), json=body, headers=headers)
                for _ in range(limit + 1)
            ]
        assert [r.status_code for r in codes] == [201] * limit + [429]
        assert codes[-1].json()["code"] == "TENANT_QUOTA_EXCEEDED"
        assert codes[-1].json()["details"] == {
            "kind": "open_jobs",
            "scope": "tenant",
            "limit": limit,
            "current": limit,
        }

    def test_writes_need_the_protocol_header(self, healthy: Instance) -> None:
        """In production a write without x-nooterra-protocol is 400 PROTOCOL_VERSION_REQUIRED."""
        resp = httpx.post(healthy.url("api", "/x402/gate/create"), json={}, headers=OPS, timeout=10)
        assert (resp.status_code, resp.json()["code"]) == (400, "PROTOCOL_VERSION_REQUIRED")

    def test_published_keyset(self, healthy: Instance) -> None:
        """/.well-known/nooterra-keys.json publishes OKP/Ed25519 keys whose kid is the key id of their PEM."""
        resp = get(healthy.url("api", "/.well-known/nooterra-keys.json"))
        assert resp.status_code == 200
        assert resp.headers["cache-control"] == "public, max-age=86400"
        keys = resp.json()["keys"]
        assert keys
        for k in keys:
            assert (k["kty"], k["crv"], k["use"], k["alg"]) == ("OKP", "Ed25519", "sig", "EdDSA")
            raw = base64.urlsafe_b64decode(k["x"] + "=" * (-len(k["x"]) % 4))
            assert k["kid"] == pem_key_id(Ed25519PublicKey.from_public_bytes(raw))


@pytest.fixture(scope="module")
def paid(healthy: Instance) -> PaidCall:
    """One paid tool call through the healthy gateway."""
    return paid_call(healthy)


class TestPaidCall:
    """402 → retry → 200 with every settlement header, provider signature, holdback and receipts."""

    def test_offer(self, paid: PaidCall) -> None:
        """The first call is 402 with both offer header forms, the payment error and a gate id."""
        h = paid.offer.headers
        assert h["x-payment-required"] == h["payment-required"]
        assert re.search(r"(^|; )amountCents=500(;|$)", h["x-payment-required"])
        assert h["x-nooterra-payment-error"] == "PAYMENT_REQUIRED"
        assert h["x-nooterra-gate-id"].startswith("x402gate_")
        assert paid.offer.json()["code"] == "PAYMENT_REQUIRED"

    def test_paid_response_headers(self, paid: PaidCall) -> None:
        """The retry is 200 with every settlement header: released, green, allow, and a decision id and policy hash."""
        h = paid.paid.headers
        assert paid.paid.status_code == 200, paid.paid.text
        assert all(h.get(name) for name in SETTLEMENT_HEADERS), [
            n for n in SETTLEMENT_HEADERS if not h.get(n)
        ]
        assert h["x-nooterra-gate-id"] == paid.gate_id
        assert h["x-nooterra-settlement-status"] == "released"
        assert h["x-nooterra-verification-status"] == "green"
        assert h["x-nooterra-policy-decision"] == "allow"
        assert h["x-nooterra-reason-code"] == "POLICY_ALLOW"
        assert h["x-nooterra-decision-id"].startswith("dec_setl_")
        assert re.fullmatch("[0-9a-f]{64}", h["x-nooterra-policy-hash"])
        assert "x-nooterra-verification-codes" not in h

    def test_response_sha256(self, paid: PaidCall) -> None:
        """x-nooterra-response-sha256 is H(canonical JSON of the body) and the provider's raw-bytes hash."""
        body = paid.paid.content
        assert paid.paid.headers["x-nooterra-response-sha256"] == canonical_hash(json.loads(body))
        assert paid.paid.headers["x-nooterra-provider-response-sha256"] == hashlib.sha256(body).hexdigest()
        assert paid.paid.json()["artifact"]["gateId"] == paid.gate_id

    def test_provider_signature(self, healthy: Instance, paid: PaidCall) -> None:
        """The provider's Ed25519 signature verifies with the key it publishes, whose PEM key id is the header's."""
        keys = provider_keys(healthy)
        kid = paid.paid.headers["x-nooterra-provider-key-id"]
        assert kid in keys
        assert pem_key_id(keys[kid]) == kid
        assert provider_signature_valid(
            keys[kid], paid.paid.headers, paid.paid.headers["x-nooterra-response-sha256"]
        )
        assert not provider_signature_valid(keys[kid], paid.paid.headers, "0" * 64)

    def test_holdback_arithmetic(self, healthy: Instance, paid: PaidCall) -> None:
        """released = amount - floor(amount*bps/1e4), refunded = the holdback, which is held for the dispute window."""
        h = paid.paid.headers
        assert EXPECTED_HOLDBACK == 13
        assert int(h["x-nooterra-released-amount-cents"]) == dep.PRICE_CENTS - EXPECTED_HOLDBACK
        assert int(h["x-nooterra-refunded-amount-cents"]) == EXPECTED_HOLDBACK
        assert (h["x-nooterra-holdback-status"], int(h["x-nooterra-holdback-amount-cents"])) == (
            "held",
            EXPECTED_HOLDBACK,
        )
        gate = get(healthy.url("api", f"/x402/gate/{paid.gate_id}"), OPS).json()
        assert gate["gate"]["holdback"]["runId"] == f"x402_{paid.gate_id}_holdback"
        assert gate["holdbackSettlement"]["status"] == "locked"

    def test_settlement_rows(self, healthy: Instance, paid: PaidCall) -> None:
        """PostgreSQL holds one primary and one holdback settlement and the balanced ledger moves of the gate."""
        with healthy.db() as conn:
            rows = conn.execute(
                "SELECT kind, status, amount_cents, released_amount_cents, refunded_amount_cents FROM x402_settlements "
                "WHERE gate_id = %s ORDER BY kind",
                (paid.gate_id,),
            ).fetchall()
            moves = conn.execute(
                "SELECT agent_id, sum(available_delta), sum(escrow_delta) FROM ledger_entries WHERE gate_id = %s "
                "GROUP BY agent_id",
                (paid.gate_id,),
            ).fetchall()
        assert rows == [("holdback", "locked", 13, 0, 0), ("primary", "released", 500, 487, 13)]
        by_agent = {agent: (int(a), int(e)) for agent, a, e in moves}
        assert by_agent[dep.payer_agent_id()] == (
            -500,
            13,
        )  # paid 500: 487 released, 13 re-locked as holdback
        assert by_agent[next(a for a in by_agent if a.startswith("agt_x402_payee_"))] == (487, 0)

    def test_replay_does_not_settle_twice(self, healthy: Instance, paid: PaidCall) -> None:
        """Retrying the settled gate answers the same decision from the provider's replay cache and moves no money."""
        with healthy.db() as conn:
            before = conn.execute(
                "SELECT count(*) FROM ledger_entries WHERE gate_id = %s", (paid.gate_id,)
            ).fetchone()
        again = get(healthy.url("gateway", TOOL), {"x-nooterra-gate-id": paid.gate_id})
        assert again.status_code == 200
        assert again.headers["x-nooterra-provider-replay"] == "duplicate"
        for name in (
            "x-nooterra-decision-id",
            "x-nooterra-settlement-status",
            "x-nooterra-released-amount-cents",
        ):
            assert again.headers[name] == paid.paid.headers[name]
        with healthy.db() as conn:
            primaries = conn.execute(
                "SELECT count(*) FROM x402_settlements WHERE gate_id = %s AND kind = 'primary'",
                (paid.gate_id,),
            ).fetchone()
            after = conn.execute(
                "SELECT count(*) FROM ledger_entries WHERE gate_id = %s", (paid.gate_id,)
            ).fetchone()
        assert primaries == (1,)
        assert after == before
        assert len(receipts(healthy, paid.gate_id)) == 1

    def test_receipt_verifies_offline(self, healthy: Instance, paid: PaidCall) -> None:
        """The receipt's decisionHash and receiptHash recompute, bind each other, and carry the verified provider key."""
        (receipt,) = receipts(healthy, paid.gate_id)
        assert receipt["schemaVersion"] == "X402ReceiptRecord.v1"
        decision, settlement = receipt["decisionRecord"], receipt["settlementReceipt"]
        assert canonical_hash(without(decision, "decisionHash", "artifactHash")) == decision["decisionHash"]
        assert canonical_hash(without(settlement, "receiptHash", "artifactHash")) == settlement["receiptHash"]
        assert settlement["decisionRef"] == {
            "decisionId": decision["decisionId"],
            "decisionHash": decision["decisionHash"],
        }
        assert decision["runId"] == settlement["runId"] == f"x402_{paid.gate_id}"
        assert decision["decisionId"] == paid.paid.headers["x-nooterra-decision-id"]
        assert decision["policyHashUsed"] == paid.paid.headers["x-nooterra-policy-hash"]
        assert settlement["createdAt"] >= decision["decidedAt"]
        assert settlement["settledAt"] >= settlement["createdAt"]
        assert (settlement["releasedAmountCents"], settlement["refundedAmountCents"]) == (487, 13)
        response_sha = paid.paid.headers["x-nooterra-response-sha256"]
        assert f"http:response_sha256:{response_sha}" in receipt["evidenceRefs"]
        assert receipt["bindings"]["response"] == {"status": 200, "sha256": response_sha}
        signing = receipt["verificationContext"]["providerSigningKey"]
        pinned = provider_keys(healthy)[receipt["providerSignature"]["keyId"]]
        embedded = serialization.load_pem_public_key(signing["publicKeyPem"].encode())
        assert isinstance(embedded, Ed25519PublicKey)
        assert embedded.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        ) == pinned.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert pem_key_id(embedded) == signing["keyId"] == receipt["providerSignature"]["keyId"]
        sig = receipt["providerSignature"]
        payload = canonical_hash({"schemaVersion": "ToolProviderSignaturePayload.v1", "responseHash": sig["responseHash"],
                                  "nonce": sig["nonce"], "signedAt": sig["signedAt"]})  # fmt: skip
        assert payload == sig["payloadHash"]
        pinned.verify(base64.b64decode(sig["signatureBase64"]), bytes.fromhex(payload))

    def test_receipt_by_id_and_export(self, healthy: Instance, paid: PaidCall) -> None:
        """The receipt is the same by id and in the NDJSON export, and needs ops_read."""
        (receipt,) = receipts(healthy, paid.gate_id)
        by_id = get(healthy.url("api", f"/x402/receipts/{receipt['receiptId']}"), OPS)
        assert by_id.json() == {"ok": True, "receipt": receipt}
        assert get(healthy.url("api", f"/x402/receipts/{receipt['receiptId']}")).status_code == 403
        export = get(healthy.url("api", f"/x402/receipts/export?runId=x402_{paid.gate_id}"), OPS)
        assert export.headers["content-type"] == "application/x-ndjson"
        assert [json.loads(line) for line in export.text.splitlines()] == [receipt]

    def test_pay_token_binding(self, healthy: Instance, paid: PaidCall) -> None:
        """The NooterraPay token verifies against the API keyset, and its sha256 is bound in the receipt and headers."""
        gate = get(healthy.url("api", f"/x402/gate/{paid.gate_id}"), OPS).json()["gate"]
        token = gate["authorization"]["token"]
        keyset = get(healthy.url("api", "/.well-known/nooterra-keys.json")).json()
        verified = crypto.verify_pay_token(token["value"], keyset, now=time.time())
        assert verified.payload["aud"] == verified.payload["payeeProviderId"]
        assert verified.payload["amountCents"] == dep.PRICE_CENTS
        (receipt,) = receipts(healthy, paid.gate_id)
        assert receipt["bindings"]["token"]["sha256"] == token["sha256"] == verified.sha256
        assert paid.paid.headers["x-nooterra-provider-token-sha256"] == verified.sha256


class TestBundle:
    """The instance's self-host bundle is the reference bundle, with its topology gate report."""

    def test_bundle_is_the_reference_bundle_with_a_green_report(self, healthy: Instance) -> None:
        """Every file of fixtures/nooterra/bundle is there unchanged, and the topology report is green."""
        root = healthy.state / "bundle"
        for source in bundle_reference.BUNDLE.rglob("*"):
            if source.is_file():
                assert (
                    root / source.relative_to(bundle_reference.BUNDLE)
                ).read_bytes() == source.read_bytes()
        report = reports.verify(root / "artifacts" / "gates" / "self-host-topology-bundle-gate.json")
        assert report["verdict"]["ok"] is True


# --- every fault changes what it names -------------------------------------------------------


def _wait_for(check: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)
    return check()


def _metrics_open(inst: Instance) -> None:
    resp = get(inst.url("api", "/metrics"))
    assert resp.status_code == 200
    assert "replay_mismatch_gauge" in metric_names(resp.text)


def _metrics_missing(inst: Instance) -> None:
    resp = get(inst.url("api", "/metrics"), OPS)
    assert resp.status_code == 200
    assert set(REQUIRED_METRICS) - metric_names(resp.text) == {"replay_mismatch_gauge", "disputes_over_sla_gauge",
                                                               "arbitration_over_sla_gauge"}  # fmt: skip


def _burst_statuses(inst: Instance) -> list[httpx.Response]:
    return burst(inst.url("api", "/ops/status"), 120, {**OPS, "x-proxy-tenant-id": "tenant_burst"})


def _rate_limit_5xx(inst: Instance) -> None:
    statuses = {r.status_code for r in _burst_statuses(inst)}
    assert 503 in statuses
    assert 429 not in statuses


def _rate_limit_no_retry_after(inst: Instance) -> None:
    limited = [r for r in _burst_statuses(inst) if r.status_code == 429]
    assert limited
    assert all("retry-after" not in r.headers for r in limited)


def _ops_status(inst: Instance) -> dict[str, Any]:
    body: dict[str, Any] = get(inst.url("api", "/ops/status"), OPS).json()
    return body


def _maintenance_stopped(inst: Instance) -> None:
    time.sleep(dep.MAINTENANCE_INTERVAL_S * 1.5)
    assert _ops_status(inst)["maintenance"]["retentionCleanup"]["lastRunAt"] is None
    assert "maintenance_last_success_unixtime" not in metric_names(get(inst.url("api", "/metrics"), OPS).text)


def _maintenance_failing(inst: Instance) -> None:
    assert _wait_for(lambda: _ops_status(inst)["maintenance"]["retentionCleanup"]["runs"] > 0)
    cleanup = _ops_status(inst)["maintenance"]["retentionCleanup"]
    assert (cleanup["lastRunOk"], cleanup["lastSuccessAt"]) == (False, None)
    text = get(inst.url("api", "/metrics"), OPS).text
    assert metric(text, 'maintenance_last_run_ok_gauge{kind="retention_cleanup"}') == 0
    assert "maintenance_last_success_unixtime" not in metric_names(text)


def _single_payment_header(inst: Instance) -> None:
    resp = get(inst.url("gateway", TOOL))
    assert resp.status_code == 402
    assert "x-payment-required" in resp.headers
    assert "payment-required" not in resp.headers


def _no_gate_id(inst: Instance) -> None:
    resp = get(inst.url("gateway", TOOL))
    assert resp.status_code == 402
    assert "x-nooterra-gate-id" not in resp.headers


def _wrong_sha(inst: Instance) -> None:
    call = paid_call(inst)
    assert call.paid.status_code == 200
    assert call.paid.headers["x-nooterra-response-sha256"] != canonical_hash(json.loads(call.paid.content))


def _holdback(inst: Instance) -> None:
    h = paid_call(inst).paid.headers
    assert int(h["x-nooterra-holdback-amount-cents"]) == 14 != EXPECTED_HOLDBACK  # round(13.75), not floor
    assert int(h["x-nooterra-released-amount-cents"]) == dep.PRICE_CENTS - 14


def _double_settlement(inst: Instance) -> None:
    call = paid_call(inst)
    again = get(inst.url("gateway", TOOL), {"x-nooterra-gate-id": call.gate_id})
    assert again.headers["x-nooterra-decision-id"] != call.paid.headers["x-nooterra-decision-id"]
    with inst.db() as conn:
        primaries = conn.execute(
            "SELECT count(*) FROM x402_settlements WHERE gate_id = %s AND kind = 'primary'", (call.gate_id,)
        ).fetchone()
        payout = conn.execute(
            "SELECT sum(available_delta) FROM ledger_entries WHERE gate_id = %s AND reason = 'x402_settle_release'",
            (call.gate_id,),
        ).fetchone()
    assert primaries == (2,)
    assert payout is not None
    assert int(payout[0]) == 2 * (dep.PRICE_CENTS - EXPECTED_HOLDBACK)
    assert len(receipts(inst, call.gate_id)) == 2


def _receipt_hash(inst: Instance) -> None:
    call = paid_call(inst)
    (receipt,) = receipts(inst, call.gate_id)
    settlement = receipt["settlementReceipt"]
    assert canonical_hash(without(settlement, "receiptHash", "artifactHash")) != settlement["receiptHash"]
    assert metric(get(inst.url("api", "/metrics"), OPS).text, "replay_mismatch_gauge") == 1


OBSERVE: dict[str, Callable[[Instance], None]] = {
    "metrics-open": _metrics_open,
    "metrics-missing-series": _metrics_missing,
    "rate-limit-5xx": _rate_limit_5xx,
    "rate-limit-no-retry-after": _rate_limit_no_retry_after,
    "maintenance-stopped": _maintenance_stopped,
    "maintenance-failing": _maintenance_failing,
    "upstream-single-payment-header": _single_payment_header,
    "gateway-no-gate-id": _no_gate_id,
    "gateway-wrong-response-sha256": _wrong_sha,
    "holdback-miscomputed": _holdback,
    "double-settlement": _double_settlement,
    "receipt-hash-mismatch": _receipt_hash,
}


# Faults with declared trips are proven through the CLI (test_nooterra_live.py); every other one has an
# observation here of the behaviour its future check will assert.
OBSERVED = tuple(f for f in FAULTS if f.id in OBSERVE)


def test_every_fault_has_an_observation() -> None:
    """Each fault is proven either by its trips or by an observation here; fault ids are unique."""
    ids = [f.id for f in FAULTS]
    assert len(ids) == len(set(ids))
    assert {f.id for f in FAULTS if not f.trips} <= set(OBSERVE) <= set(ids)


@pytest.mark.parametrize("fault", OBSERVED, ids=lambda f: f.id)
def test_fault_changes_behaviour(fault: Fault) -> None:
    """The fault's deployment shows the defect the fault names, and stops completely afterwards."""
    inst = start("fault", fault)
    try:
        OBSERVE[fault.id](inst)
    finally:
        procs = inst.procs()
        dep.down(inst.state)
    assert not any(alive(p) for p in procs)


def _listening(port: int) -> bool:
    """Whether something accepts connections on the loopback port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class TestLifecycle:
    """`up` records what it started; `down` stops all of it and leaves nothing behind."""

    def test_down_leaves_nothing(self) -> None:
        """After `down`, no recorded process runs, the ports are free and the state is gone."""
        inst = start("lifecycle")
        procs = inst.procs()
        try:
            assert sorted(p.name for p in procs) == sorted(["postgres", *dep.SERVICE_ORDER])
            assert all(alive(p) for p in procs)
            with pytest.raises(dep.ReferenceError_, match="already running"):
                dep.up(inst.state)
        finally:
            stopped = dep.down(inst.state)
        assert stopped == len(procs)
        assert not any(alive(p) for p in procs)
        assert not inst.state.exists()
        assert not dep.magic_link_data_dir(inst.state).exists()
        # nothing listens any more (a closed port may still sit in TIME_WAIT for a minute, which is no listener)
        assert not any(_listening(port) for port in inst.ports.values())
