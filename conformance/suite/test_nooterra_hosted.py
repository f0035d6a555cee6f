"""Nooterra hosted baseline: the probes of upstream's evidence command that nooterra-live lacks (digest §4.1).

/healthz answers 200 with ok (upstream's first probe, sent without credentials), the S8 approval
rollout guard holds on ``GET /ops/config``, and ``GET /ops/finance/billing/catalog`` serves the launch
plan catalog. Each check's observation is what the ``HostedBaselineEvidence.v1`` report records.
"""

from __future__ import annotations

import json
from typing import Any

from conformance import nooterra_hosted as hosted
from conformance.checks import check, expect
from conformance.errors import Undetermined
from conformance.probes.apart import ApartFromPaidCalls
from conformance.probes.http import HttpGet, HttpResponse, service_request
from conformance.profile import NooterraApi, Profile, Service


def _cfg(profile: Profile) -> NooterraApi:
    if profile.nooterra is None:  # the selectors only yield targets of profiles that declare it
        raise Undetermined("the profile declares no nooterra section")
    return profile.nooterra


def _api(profile: Profile) -> list[Service]:
    cfg = profile.nooterra
    return [] if cfg is None else [profile.service(cfg.api)]


def _api_with_token(profile: Profile) -> list[Service]:
    cfg = profile.nooterra
    return _api(profile) if cfg is not None and cfg.ops_token else []


def _api_with_billing_token(profile: Profile) -> list[Service]:
    cfg = profile.nooterra
    return _api(profile) if cfg is not None and cfg.billing_token else []


def _get(profile: Profile, path: str, token: str | None) -> HttpGet:
    """A GET to the API as upstream's evidence command sends it: tenant and ops token, or nothing."""
    cfg = _cfg(profile)
    svc = profile.service(cfg.api)
    headers = () if token is None else (("x-proxy-tenant-id", cfg.tenant), ("x-proxy-ops-token", token))
    return service_request(svc, path, headers=headers)


def body_of(obs: HttpResponse) -> Any:
    """The body as upstream reads it: JSON, ``{"raw": text}`` when it is not JSON, null when empty."""
    text = obs.body.decode("utf-8", errors="replace")
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"raw": text}


@check(
    "nooterra.healthz.ok",
    title="GET /healthz without credentials answers 200 with ok: true",
    targets=_api,
    observe=lambda profile, _: _get(profile, "/healthz", None),
    remediation="{name}'s /healthz is not ok: ok mirrors dbOk, so check the API's database connection "
    "(DATABASE_URL, PROXY_PG_SCHEMA) and the body's dbError.",
)
def test_healthz_ok(target: Service, obs: HttpResponse) -> None:
    """Upstream's rule: HTTP 200 and ``body.ok === true``; the body (less its latency) is the evidence."""
    body = hosted.healthz_evidence(body_of(obs))
    ok = obs.status == 200 and isinstance(body, dict) and body.get("ok") is True
    expect(
        ok,
        f"GET {obs.url} answered {obs.status}"
        + (f" with ok={body.get('ok')!r}" if isinstance(body, dict) else " without a JSON object"),
        reason="healthz_not_ok",
        observed={"statusCode": obs.status, "body": body},
        expected={"statusCode": 200, "body": {"ok": True}},
    )


@check(
    "nooterra.ops_config.s8_guard",
    title="The S8 approval rollout guard holds: enforcement off, or on with an explicit policy",
    targets=_api_with_token,
    observe=lambda profile, _: ApartFromPaidCalls(
        inner=_get(profile, "/ops/config", _cfg(profile).ops_token)
    ),
    remediation="{name} enforces S8 approval on x402 authorize-payment without a well-formed policy: configure "
    "config.s8Approval.policy with schemaVersion NooterraHumanApprovalPolicy.v1, highRiskActionTypes[], "
    "requireApprovalAboveCents and strictEvidenceRefs (or turn enforcement off until it is ready).",
    applies_when="the ops token (ops_token, GATES_NOOTERRA_OPS_TOKEN)",
)
def test_s8_guard(target: Service, obs: HttpResponse) -> None:
    """``GET /ops/config`` answers 200 and ``config.s8Approval`` passes upstream's rollout guard."""
    body = body_of(obs)
    config = body.get("config") if isinstance(body, dict) else None
    s8 = config.get("s8Approval") if isinstance(config, dict) and obs.status == 200 else None
    rollout = hosted.s8_rollout(s8)
    ok = obs.status == 200 and rollout["ok"]
    expect(
        ok,
        f"GET {obs.url} answered {obs.status}"
        if obs.status != 200
        else f"{rollout['failureCode']}: {rollout['message']}",
        reason="ops_config_unavailable" if obs.status != 200 else str(rollout["failureCode"]),
        observed={"statusCode": obs.status, "s8Approval": hosted.s8_config_summary(s8), "rollout": rollout},
        expected={"statusCode": 200, "rollout": {"ok": True, "failureCode": None}},
    )


@check(
    "nooterra.billing.catalog_valid",
    title="The billing catalog serves the launch plans (BillingPlanCatalog.v1) to a finance token",
    targets=_api_with_billing_token,
    observe=lambda profile, _: ApartFromPaidCalls(
        inner=_get(profile, "/ops/finance/billing/catalog", _cfg(profile).billing_token)
    ),
    remediation="{name}'s GET /ops/finance/billing/catalog must answer a finance_read token with "
    "BillingPlanCatalog.v1 and the free, builder, growth and enterprise plans, each with planId, displayName "
    "and numeric launch fields; a 403 means the finance token lacks finance_read.",
    applies_when="the finance or ops token (finance_token, GATES_NOOTERRA_FINANCE_TOKEN; else ops_token)",
)
def test_billing_catalog(target: Service, obs: HttpResponse) -> None:
    """200, and the catalog passes upstream's launch-plan validation (numbers must be JSON numbers)."""
    validation = (
        hosted.billing_validation(body_of(obs)) if obs.status == 200 else hosted.billing_request_failed()
    )
    expect(
        obs.status == 200 and validation["ok"],
        f"GET {obs.url} answered {obs.status}"
        if obs.status != 200
        else f"GET {obs.url}: {'; '.join(validation['failures'])}",
        reason="billing_catalog_forbidden"
        if obs.status in (401, 403)
        else "billing_catalog_unavailable"
        if obs.status != 200
        else "billing_catalog_invalid",
        observed={"statusCode": obs.status, "validation": validation},
        expected={"statusCode": 200, "validation": {"ok": True, "failures": []}},
    )
