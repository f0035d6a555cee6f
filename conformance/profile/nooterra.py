"""The x402 sections: paid-call evidence bundles, paid calls, the Nooterra API block and hosted evidence."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any

from conformance.profile.fields import (
    check_unique,
    parse_run_param,
    parse_url,
    service_name,
)
from conformance.profile.model import (
    Bundle,
    BundleFile,
    EnvFile,
    HostedEvidence,
    NooterraApi,
    PaidCall,
    RateLimitProbe,
    Service,
)
from conformance.profile.resolver import Resolver
from conformance.yamlsource import PathKey


def parse_bundle(r: Resolver, raw: Mapping[str, Any] | None) -> Bundle | None:
    """Resolve the bundle's files; a relative path lies under its root."""
    if raw is None:
        return None
    root = r.text(raw["root"], ("bundle", "root"))
    files = []
    for key, spec in raw["files"].items():
        p: PathKey = ("bundle", "files", key)
        if isinstance(spec, Mapping):
            path = r.text(spec["path"], (*p, "path"))
            max_age = spec.get("maxAgeSeconds")
            age = None if max_age is None else r.integer(max_age, (*p, "maxAgeSeconds"), low=1, high=10**9)
        else:
            path, age = r.text(spec, p), None
        if not path:
            raise r.fail(p, f"bundle file {key!r} has an empty path")
        files.append(BundleFile(name=key, path=posixpath.join(root, path), max_age_s=age))
    return Bundle(root=root, files=tuple(files))


_KEY_ID = re.compile(r"^key_[0-9a-f]{24}$")


def parse_paid_calls(r: Resolver, raws: Sequence[Mapping[str, Any]]) -> tuple[PaidCall, ...]:
    out = []
    for i, raw in enumerate(raws):
        p: PathKey = ("paidCalls", i)
        path = r.text(raw["path"], (*p, "path"))
        if not path.startswith("/"):
            raise r.fail((*p, "path"), f"the paid route must start with '/', got {path!r}")
        pins = tuple(
            k.strip()
            for k in r.text(raw.get("pinnedProviderKeys", ""), (*p, "pinnedProviderKeys")).split(",")
            if k.strip()
        )
        for key in pins:
            if not _KEY_ID.match(key):
                raise r.fail(
                    (*p, "pinnedProviderKeys"), f"{key!r} is not a provider key id (key_ followed by 24 hex)"
                )
        token = r.text(raw.get("opsToken", ""), (*p, "opsToken")).strip()
        out.append(
            PaidCall(
                name=raw["name"],
                gateway=parse_url(r, raw["gateway"], (*p, "gateway")),
                path=path,
                api=parse_url(r, raw["api"], (*p, "api")),
                upstream=parse_url(r, raw["upstream"], (*p, "upstream")),
                provider_keyset=parse_url(r, raw["providerKeyset"], (*p, "providerKeyset"), base=False),
                pinned_key_ids=pins,
                holdback_bps=r.integer(raw.get("holdbackBps", 0), (*p, "holdbackBps"), low=0, high=10_000),
                tenant=r.text(raw.get("tenant", "tenant_default"), (*p, "tenant")) or "tenant_default",
                ops_token=token or None,
                run_param=parse_run_param(r, raw.get("runParam", ""), (*p, "runParam")),
                visibility_budget_s=r.integer(
                    raw.get("visibilityBudgetSeconds", 3), (*p, "visibilityBudgetSeconds"), low=0, high=600
                ),
            )
        )
    check_unique([c.name for c in out], "paidCalls", "name", r)
    return tuple(out)


def parse_nooterra(
    r: Resolver,
    raw: Mapping[str, Any] | None,
    services: Sequence[Service],
    env_files: Sequence[EnvFile],
    bundle: Bundle | None,
) -> NooterraApi | None:
    if raw is None:
        return None
    p: PathKey = ("nooterra",)
    by_name = {s.name: s for s in services}

    def service(key: str, *, kinds: tuple[str, ...]) -> str | None:
        name = raw.get(key)
        if name is None:
            return None
        svc = by_name.get(name)
        if svc is None or svc.kind not in kinds:
            raise r.fail((*p, key), f"{key} must name a declared {' or '.join(kinds)} service, got {name!r}")
        return str(name)

    api = service("api", kinds=("http",))
    assert api is not None  # required by the schema
    env_file = raw.get("envFile")
    if env_file is not None and env_file not in {e.name for e in env_files}:
        raise r.fail((*p, "envFile"), f"envFile {env_file!r} is not declared under envFiles")
    alert_rules = raw.get("alertRules")
    if alert_rules is not None and (bundle is None or bundle.file(alert_rules) is None):
        raise r.fail((*p, "alertRules"), f"alertRules {alert_rules!r} is not a file of the bundle")
    maintenance = raw.get("maintenance") or {}
    probe = raw.get("rateLimitProbe")
    rate_limit = None
    if probe is not None:
        authenticated = probe.get("authenticated", False)
        if not isinstance(authenticated, bool):
            raise r.fail((*p, "rateLimitProbe", "authenticated"), "authenticated must be true or false")
        rate_limit = RateLimitProbe(
            authenticated=authenticated,
            path=r.text(probe.get("path", "/capabilities"), (*p, "rateLimitProbe", "path")),
            tenant=r.text(probe.get("tenant", "tenant_gates_rate_probe"), (*p, "rateLimitProbe", "tenant")),
            max_requests=r.integer(
                probe.get("maxRequests", 120), (*p, "rateLimitProbe", "maxRequests"), low=1, high=10_000
            ),
        )
    paid = raw.get("paidUpstream") or {}
    staging = r.opt_text(raw.get("stagingEnvFile"), (*p, "stagingEnvFile"))
    return NooterraApi(
        api=api,
        tenant=r.text(raw.get("tenant", "tenant_default"), (*p, "tenant")),
        ops_token=r.text(raw.get("opsToken", ""), (*p, "opsToken")),
        env_file=env_file,
        maintenance=service_name(r, maintenance.get("service"), by_name, (*p, "maintenance", "service")),
        maintenance_kinds=tuple(maintenance.get("kinds") or ()),
        maintenance_max_age_s=r.integer(
            maintenance.get("maxAgeSeconds", 900), (*p, "maintenance", "maxAgeSeconds"), low=1, high=10**8
        ),
        required_metrics=tuple(raw.get("requiredMetrics") or ()),
        on_demand_series=tuple(raw.get("onDemandSeries") or ()),
        max_ops_tokens=r.integer(raw.get("maxOpsTokens", 8), (*p, "maxOpsTokens"), low=1, high=10_000),
        rate_limit=rate_limit,
        alert_rules=alert_rules,
        staging_env_file=staging or None,
        paid_upstream=service_name(r, paid.get("service"), by_name, (*p, "paidUpstream", "service")),
        paid_route=r.opt_text(paid.get("route"), (*p, "paidUpstream", "route")),
        finance_token=r.text(raw.get("financeToken", ""), (*p, "financeToken")),
        hosted=parse_hosted_evidence(r, raw.get("hostedBaseline") or {}, (*p, "hostedBaseline")),
    )


def parse_hosted_evidence(r: Resolver, raw: Mapping[str, Any], p: PathKey) -> HostedEvidence:
    values = {
        key: (r.opt_text(raw.get(key), (*p, key)) or "").strip() or None
        for key in ("environment", "signingKeyFile", "signatureKeyId")
    }
    if values["signatureKeyId"] and not values["signingKeyFile"]:
        raise r.fail((*p, "signatureKeyId"), "a signature key id needs a signing key file (signingKeyFile)")
    return HostedEvidence(
        environment=values["environment"],
        signing_key_file=values["signingKeyFile"],
        signature_key_id=values["signatureKeyId"],
    )
