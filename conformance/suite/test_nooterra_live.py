"""Nooterra live: the API's controls as a client sees them (digest §5, §6.2).

The auth-mode proxy answers, ops tokens are scoped, the maintenance loop succeeds recently,
/metrics is closed without a token and complete with one, alert rules read only exported series,
the rate limit answers 429 with retry-after (never a 5xx), quotas are set, staging and production
share nothing, and a paid upstream challenges with 402.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from conformance import clock
from conformance import nooterra_hosted as hosted
from conformance import nooterra_live as live
from conformance.checks import check, expect
from conformance.envfile import parse_env
from conformance.errors import Undetermined
from conformance.nooterra import FileRead
from conformance.probes.apart import ApartFromPaidCalls
from conformance.probes.bundle import BundleRead
from conformance.probes.files import FileContent, ReadFile
from conformance.probes.http import HttpGet, HttpResponse, service_request
from conformance.probes.ratelimit import RPM_KEY, LimitBurstResult, RateLimitBurst
from conformance.profile import NooterraApi, Profile, Service
from conformance.redact import MIN_SCRUB_LENGTH, is_secret_key


def _cfg(profile: Profile) -> NooterraApi:
    if profile.nooterra is None:  # the selectors only yield targets of profiles that declare it
        raise Undetermined("the profile declares no nooterra section")
    return profile.nooterra


def _api_when(*needs: Callable[[NooterraApi], object]) -> Callable[[Profile], list[Service]]:
    """The API service, when the profile's nooterra section provides everything in ``needs``."""

    def select(profile: Profile) -> list[Service]:
        cfg = profile.nooterra
        if cfg is None or not all(need(cfg) for need in needs):
            return []
        return [profile.service(cfg.api)]

    return select


_api = _api_when()
_api_with_token = _api_when(lambda c: c.ops_token)
_api_with_env = _api_when(lambda c: c.env_file)
_api_with_rate_probe = _api_when(
    lambda c: c.rate_limit, lambda c: c.ops_token or (c.rate_limit and not c.rate_limit.authenticated)
)
_api_with_alert_rules = _api_when(lambda c: c.alert_rules)
_api_with_staging = _api_when(lambda c: c.env_file, lambda c: c.staging_env_file)


def _maintenance(profile: Profile) -> list[Service]:
    cfg = profile.nooterra
    if cfg is None or cfg.maintenance is None or not cfg.ops_token:
        return []
    return [profile.service(cfg.maintenance)]


def _maintenance_with_kinds(profile: Profile) -> list[Service]:
    cfg = profile.nooterra
    return _maintenance(profile) if cfg is not None and cfg.maintenance_kinds else []


def _paid_upstream(profile: Profile) -> list[Service]:
    cfg = profile.nooterra
    if cfg is None or cfg.paid_upstream is None or cfg.paid_route is None:
        return []
    return [profile.service(cfg.paid_upstream)]


def api_request(profile: Profile, path: str, *, token: bool = True, tenant: str | None = None) -> HttpGet:
    """A GET to the API as the declared tenant, with the ops token unless ``token`` is false."""
    cfg = _cfg(profile)
    svc = profile.service(cfg.api)
    headers = [("x-proxy-tenant-id", tenant or cfg.tenant)]
    if token:
        headers.append(("x-proxy-ops-token", cfg.ops_token))
    return service_request(svc, path, headers=tuple(headers))


def _json(obs: HttpResponse) -> Any:
    try:
        return json.loads(obs.body)
    except ValueError:
        return None


def _env_file(profile: Profile) -> ReadFile:
    cfg = _cfg(profile)
    env = next(e for e in profile.env_files if e.name == cfg.env_file)
    return ReadFile(path=env.path)


def _env(obs: FileContent, what: str) -> dict[str, str]:
    if not obs.readable or obs.text is None:
        raise Undetermined(f"{what} cannot be read ({obs.error})")
    return parse_env(obs.text).effective()


# --- auth-mode proxy -------------------------------------------------------------------------


@check(
    "nooterra.auth_mode.proxied",
    title="The API host answers /v1/public/auth-mode through its onboarding proxy",
    targets=_api,
    observe=lambda profile, _: api_request(profile, "/v1/public/auth-mode", token=False),
    remediation="Set PROXY_ONBOARDING_BASE_URL on {name} to the magic-link service's URL and make sure "
    "magic-link is reachable from the API host.",
)
def test_auth_mode(target: Service, obs: HttpResponse) -> None:
    """200 with a string authMode; a missing proxy (503) and an unreachable one (502) are told apart."""
    body = _json(obs)
    code = body.get("code") if isinstance(body, dict) else None
    mode = body.get("authMode") if isinstance(body, dict) else None
    if obs.status == 503 and code == "ONBOARDING_PROXY_NOT_CONFIGURED":
        reason = "onboarding_proxy_not_configured"
    elif obs.status == 502 and code == "ONBOARDING_PROXY_UNREACHABLE":
        reason = "onboarding_proxy_unreachable"
    elif obs.status != 200:
        reason = "auth_mode_status_unexpected"
    else:
        reason = "auth_mode_missing"
    ok = obs.status == 200 and isinstance(mode, str) and bool(mode)
    remediation = {
        "onboarding_proxy_not_configured": f"Set PROXY_ONBOARDING_BASE_URL in {target.name}'s env file to the "
        "magic-link service's URL and restart the API.",
        "onboarding_proxy_unreachable": f"PROXY_ONBOARDING_BASE_URL is set on {target.name}, but nothing answers "
        "there: correct it to the magic-link service's URL as the API host reaches it, or start magic-link.",
    }.get(reason)
    expect(
        ok,
        f"GET {obs.url} answered {obs.status}"
        + (f" {code}" if code else "")
        + ("" if ok or obs.status != 200 else " without a string authMode"),
        reason=reason,
        observed={"status": obs.status, "code": code, "authMode": mode},
        expected={"status": 200, "authMode": "a non-empty string"},
        remediation=remediation,
    )


# --- ops tokens --------------------------------------------------------------------------------


@check(
    "nooterra.ops_auth.scoped",
    title="The API runs with scoped ops tokens, none without scopes, and few of them",
    targets=_api,
    observe=lambda profile, _: api_request(profile, "/healthz", token=False),
    remediation="Configure PROXY_OPS_TOKENS (token:scope,...;...) on {name}, one narrowly scoped token per "
    "consumer, and remove the legacy PROXY_OPS_TOKEN.",
)
def test_ops_auth_scoped(target: Service, obs: HttpResponse, profile: Profile) -> None:
    """/healthz opsAuth: mode scoped, no token with empty scopes, effective tokens within the bound."""
    body = _json(obs)
    auth = body.get("opsAuth") if isinstance(body, dict) else None
    if not isinstance(auth, dict):
        raise Undetermined(f"GET {obs.url} answered {obs.status} without an opsAuth object")
    bound = _cfg(profile).max_ops_tokens
    mode, empty, count = (
        auth.get("mode"),
        auth.get("scopedTokensEmptyScopesCount"),
        auth.get("effectiveTokensCount"),
    )
    problems = []
    if mode != "scoped":
        problems.append(f"opsAuth.mode is {mode!r}")
    if empty != 0:
        problems.append(f"{empty} scoped token(s) have empty scopes")
    if not isinstance(count, int) or count > bound:
        problems.append(f"{count} effective ops tokens (at most {bound} declared)")
    fixes = []
    if mode != "scoped":
        fixes.append("set PROXY_OPS_TOKENS (token:scope,...;...) and remove the legacy PROXY_OPS_TOKEN")
    if empty != 0:
        fixes.append("give every PROXY_OPS_TOKENS entry its scopes")
    if not isinstance(count, int) or count > bound:
        fixes.append("drop unused PROXY_OPS_TOKENS entries (or raise nooterra.maxOpsTokens in the profile)")
    expect(
        not problems,
        f"{target.name}: {'; '.join(problems)}",
        remediation=f"In {target.name}'s env file, " + "; ".join(fixes) + ", then restart it."
        if fixes
        else None,
        reason="ops_auth_legacy" if mode != "scoped" else "ops_auth_not_scoped",
        observed={"mode": mode, "scopedTokensEmptyScopesCount": empty, "effectiveTokensCount": count},
        expected={"mode": "scoped", "scopedTokensEmptyScopesCount": 0, "effectiveTokensCount": f"<= {bound}"},
    )


@check(
    "nooterra.ops_tokens.scoped",
    title="Every ops token in the API's env file is well formed and narrowly scoped",
    targets=_api_with_env,
    observe=lambda profile, _: _env_file(profile),
    remediation="Rewrite PROXY_OPS_TOKENS in {name}'s env file: one entry per consumer with only the scopes "
    "it needs; no token may hold every write scope or none.",
)
def test_ops_tokens_scoped(target: Service, obs: FileContent) -> None:
    """PROXY_OPS_TOKENS is set; each entry has known, non-empty scopes and none holds every write scope."""
    env = _env(obs, obs.path)
    problems = live.ops_token_problems(env.get("PROXY_OPS_TOKENS"))
    expect(
        not problems,
        f"{obs.path}: {'; '.join(problems)}",
        reason="ops_tokens_unscoped",
        observed=problems,
        expected=[],
    )


# --- maintenance -------------------------------------------------------------------------------


@check(
    "nooterra.maintenance.schedulers_enabled",
    title="The API reports its maintenance schedulers enabled",
    targets=_maintenance,
    observe=lambda profile, _: ApartFromPaidCalls(inner=api_request(profile, "/ops/status")),
    remediation="Set the disabled reconciliation switches (PROXY_FINANCE_RECONCILE_ENABLED, "
    "PROXY_MONEY_RAIL_RECONCILE_ENABLED) to 1 on the API and restart it.",
    applies_when="the ops token (ops_token, GATES_NOOTERRA_OPS_TOKEN)",
)
def test_maintenance_schedulers(target: Service, obs: HttpResponse) -> None:
    """/ops/status: 200 with ok, finance and money-rail reconciliation enabled (the hosted-baseline rule)."""
    body = _json(obs)
    doc: dict[str, Any] = body if isinstance(body, dict) else {}
    answered = obs.status == 200 and doc.get("ok") is True
    maintenance: dict[str, Any] = doc["maintenance"] if isinstance(doc.get("maintenance"), dict) else {}
    state = {
        kind: (maintenance.get(kind) or {}).get("enabled") is True
        for kind in ("financeReconciliation", "moneyRailReconciliation")
    }
    # the summary is hosted-baseline evidence: what each job is, without its clocks
    observed = {"statusCode": obs.status, "ok": doc.get("ok"), **state,
                "summary": hosted.ops_status_summary(doc) if answered else None}  # fmt: skip
    expected = {"statusCode": 200, "ok": True, **dict.fromkeys(state, True)}
    if not answered:
        expect(False, f"GET {obs.url} answered {obs.status} with ok={doc.get('ok')!r}",
               reason="ops_status_unavailable", observed=observed, expected=expected,
               remediation="/ops/status did not answer ok: a 403 means the ops token (GATES_NOOTERRA_OPS_TOKEN) "
               "lacks ops_read in PROXY_OPS_TOKENS; a 5xx, look at the API's log and its database.")  # fmt: skip
    switches = {"financeReconciliation": "PROXY_FINANCE_RECONCILE_ENABLED",
                "moneyRailReconciliation": "PROXY_MONEY_RAIL_RECONCILE_ENABLED"}  # fmt: skip
    off = [switches[k] for k, on in state.items() if not on]
    expect(
        all(state.values()),
        f"GET {obs.url}: " + ", ".join(f"{k}.enabled={v}" for k, v in state.items()),
        remediation=f"Set {' and '.join(f'{k}=1' for k in off)} in the API's env file and restart it.",
        reason="maintenance_schedulers_disabled",
        observed=observed,
        expected=expected,
    )


@check(
    "nooterra.maintenance.recent_success",
    title="Every maintenance job succeeded recently (maintenance_last_success_unixtime)",
    targets=_maintenance_with_kinds,
    observe=lambda profile, _: api_request(profile, "/metrics"),
    remediation="The maintenance loop ({name}) is not running or its jobs fail: check its process and log, "
    "the DATABASE_URL and PROXY_PG_SCHEMA in its env file (the API's schema); if its "
    "PROXY_MAINTENANCE_INTERVAL_SECONDS is longer than maintenance.max_age, raise maintenance.max_age.",
    applies_when="the ops token (ops_token, GATES_NOOTERRA_OPS_TOKEN)",
)
def test_maintenance_recent(target: Service, obs: HttpResponse, profile: Profile) -> None:
    """For each declared kind, the last success is no older than the declared bound."""
    if obs.status != 200:
        raise Undetermined(f"GET {obs.url} answered {obs.status}; see nooterra.metrics.series_present")
    cfg = _cfg(profile)
    samples = live.metric_samples(obs.body.decode("utf-8", errors="replace"))
    now = clock.now().timestamp()
    state: dict[str, str] = {}
    for kind in cfg.maintenance_kinds:
        values = [
            v
            for labels, v in samples.get("maintenance_last_success_unixtime", [])
            if labels.get("kind") == kind
        ]
        try:
            last = float(values[0]) if values else None
        except ValueError:
            last = None
        if last is None or last <= 0:
            state[kind] = "never"
        else:
            state[kind] = "recent" if now - last <= cfg.maintenance_max_age_s else "stale"
    bad = sorted(k for k, v in state.items() if v != "recent")
    expect(
        not bad,
        f"maintenance kinds without a success in the last {cfg.maintenance_max_age_s}s: "
        + ", ".join(f"{k} ({state[k]})" for k in bad),
        reason="maintenance_not_succeeding",
        observed=state,
        expected=dict.fromkeys(state, "recent"),
    )


# --- metrics and alerts ------------------------------------------------------------------------


@check(
    "nooterra.metrics.requires_auth",
    title="/metrics is refused without an ops token",
    targets=_api,
    observe=lambda profile, _: api_request(profile, "/metrics", token=False),
    remediation="{name} serves /metrics to anyone: require ops_read on it (do not exempt it from auth).",
)
def test_metrics_requires_auth(target: Service, obs: HttpResponse) -> None:
    """An unauthenticated scrape gets 401 or 403."""
    expect(
        obs.status in (401, 403),
        f"GET {obs.url} without a token answered {obs.status}",
        reason="metrics_open",
        observed=obs.status,
        expected="401 or 403",
    )


@check(
    "nooterra.metrics.series_present",
    title="/metrics serves every required series to an ops token",
    targets=_api_with_token,
    observe=lambda profile, _: api_request(profile, "/metrics"),
    remediation="{name}'s /metrics lacks required series: check that the command-center summary does not fail "
    "(it guards replay_mismatch_gauge and the dispute gauges; see the API's log), or drop a series the deployment "
    "does not promise from nooterra.requiredMetrics in the profile.",
    applies_when="the ops token (ops_token, GATES_NOOTERRA_OPS_TOKEN)",
)
def test_metrics_series(target: Service, obs: HttpResponse, profile: Profile) -> None:
    """200 and every required series name appears as a sample."""
    required = list(_cfg(profile).required_metrics)
    names = live.metric_names(obs.body.decode("utf-8", errors="replace")) if obs.status == 200 else set()
    missing = [m for m in required if m not in names]
    observed = {"statusCode": obs.status, "metricCount": len(names), "missingMetrics": missing}
    expected = {"statusCode": 200, "missingMetrics": []}
    if obs.status != 200:
        expect(False, f"GET {obs.url} with the ops token answered {obs.status}", reason="metrics_unavailable",
               observed=observed, expected=expected,
               remediation="Give the ops token the suite uses (GATES_NOOTERRA_OPS_TOKEN) ops_read in the API's "
               "PROXY_OPS_TOKENS, or look at the API's log for a 5xx.")  # fmt: skip
    expect(
        not missing,
        f"GET {obs.url} lacks {', '.join(missing)}",
        reason="metrics_missing_series",
        observed=observed,
        expected=expected,
    )


def _rules_file(profile: Profile) -> BundleRead:
    cfg, bundle = _cfg(profile), profile.bundle
    found = bundle.file(cfg.alert_rules) if bundle is not None and cfg.alert_rules else None
    if found is None:
        raise Undetermined("the bundle declares no alert rules file")
    return BundleRead(path=found.path)


@check(
    "nooterra.alerts.rules_valid",
    title="The alert rules file is present and a valid Prometheus rules file",
    targets=_api_with_alert_rules,
    observe=lambda profile, _: _rules_file(profile),
    remediation="Ship the Prometheus alert rules (deploy/observability/prometheus-rules.yml) with named groups "
    "of alerting rules, each with alert, expr and a duration in for.",
)
def test_alert_rules_valid(target: Service, obs: FileRead) -> None:
    """The file reads, parses and every alerting rule is well formed."""
    if obs.text is None:
        expect(False, f"{obs.path} cannot be read ({obs.error})", reason="alert_rules_missing",
               observed=obs.error, expected="a readable rules file")  # fmt: skip
        return
    rules, problems = live.alert_rules(obs.text)
    expect(
        not problems,
        f"{obs.path}: {'; '.join(problems)}",
        reason="alert_rules_invalid",
        observed={"alerts": len(rules), "problems": problems},
        expected={"problems": []},
    )


@check(
    "nooterra.alerts.series_exported",
    title="Every alert rule reads only series the API exports",
    targets=_api_with_alert_rules,
    observe=lambda profile, _: {"rules": _rules_file(profile), "metrics": api_request(profile, "/metrics")},
    remediation="Alert rules on series the API never exports can never fire: fix the expressions in the bundle's "
    "alert rules file, or, when the API emits a series only once there is something to count, list it under "
    "nooterra.onDemandSeries in the profile.",
)
def test_alert_series_exported(target: Service, obs: dict[str, Any], profile: Profile) -> None:
    """Each series an alert reads appears in an authenticated scrape or is one the API emits on demand."""
    rules_file: FileRead = obs["rules"]
    metrics: HttpResponse = obs["metrics"]
    if rules_file.text is None:
        raise Undetermined(f"{rules_file.path} cannot be read; see nooterra.alerts.rules_valid")
    if metrics.status != 200:
        raise Undetermined(
            f"GET {metrics.url} answered {metrics.status}; see nooterra.metrics.series_present"
        )
    rules, _ = live.alert_rules(rules_file.text)
    exported = live.metric_names(metrics.body.decode("utf-8", errors="replace"))
    on_demand = _cfg(profile).on_demand_series
    unknown = live.unknown_series(rules, exported, on_demand)
    read: set[str] = set()
    for rule in rules:
        read |= live.promql_series(rule.expr)
    not_yet = sorted((read & set(on_demand)) - exported)
    expect(
        not unknown,
        "alerts on series absent from the scrape that the API does not emit on demand either: "
        + "; ".join(f"{a}: {', '.join(s)}" for a, s in sorted(unknown.items())),
        reason="alert_rules_unknown_series",
        observed={"unknown": unknown, "onDemandNotYetExported": not_yet},
        expected={"unknown": {}},
    )


# --- rate limits and quotas ----------------------------------------------------------------------


def _burst(profile: Profile, _: Service) -> RateLimitBurst:
    cfg = _cfg(profile)
    probe = cfg.rate_limit
    if probe is None:
        raise Undetermined("the profile declares no rate-limit probe")
    env = next((e for e in profile.env_files if e.name == cfg.env_file), None)
    return RateLimitBurst(
        request=api_request(profile, probe.path, token=probe.authenticated, tenant=probe.tenant),
        env_path=env.path if env is not None else None,
        max_requests=probe.max_requests,
    )


@check(
    "nooterra.rate_limit.enforced",
    title="A burst meets the rate limit: 429 with retry-after, never a 5xx",
    targets=_api_with_rate_probe,
    observe=_burst,
    remediation="Set PROXY_RATE_LIMIT_RPM and PROXY_RATE_LIMIT_BURST (and PROXY_RATE_LIMIT_PER_KEY_RPM/BURST) "
    "in {name}'s env file and restart it; an exhausted bucket must answer 429 RATE_LIMITED with retry-after.",
    applies_when="the profile's rate-limit probe (and the ops token, GATES_NOOTERRA_OPS_TOKEN, if it is authenticated)",
)
def test_rate_limit(target: Service, obs: LimitBurstResult) -> None:
    """Some 2xx, then a 429 with retry-after, or never more admitted than the declared limit allows.

    The verdict depends on no timing: a burst too slow to empty the bucket is undetermined, never
    a failure, and a missing 429 fails only once more requests were admitted than the limit read
    from the env file can admit in the time the burst took.
    """
    limit = obs.limit
    saw_2xx = obs.count(lambda s: 200 <= s < 300) > 0
    saw_5xx = obs.count(lambda s: s >= 500) > 0
    other_4xx = obs.count(lambda s: 400 <= s < 500 and s != 429) > 0
    retry_after = obs.first_429_retry_after is not None and obs.first_429_retry_after.strip().isdigit()
    disabled = limit is not None and limit.rpm <= 0
    observed = {"saw2xx": saw_2xx, "saw429": obs.saw_429, "retryAfter": retry_after, "saw5xx": saw_5xx,
                "sawUnexpected4xx": other_4xx, "requests": obs.sent,
                "statusCodeCounts": {str(status): n for status, n in obs.statuses},
                "limit": None if limit is None else {"source": limit.source, "rpm": limit.rpm, "burst": limit.burst},
                "admitted": obs.admitted, "elapsedMs": obs.elapsed_ms,
                "admitsAtMost": None if limit is None or disabled else int(limit.admits_at_most(obs.elapsed_ms))}  # fmt: skip
    summary = f"{obs.sent} requests to {obs.url} in {obs.elapsed_ms:.0f} ms: " + ", ".join(
        f"{n}x {s}" for s, n in obs.statuses
    )
    if not (saw_5xx or other_4xx or obs.saw_429 or disabled or obs.exceeded):
        why = (
            f"the limit read from {limit.source} (rpm {limit.rpm:g}, burst {limit.burst:g}) admits up to "
            f"{observed['admitsAtMost']} requests in that time, so the burst was too slow to empty the bucket"
            if limit is not None
            else f"without the configured limit ({obs.limit_error}) a missing 429 does not show a missing limit"
        )
        raise Undetermined(f"{summary}; no 429: {why}")
    if saw_5xx:
        reason = "rate_limit_probe_saw_5xx"
    elif other_4xx:
        reason = "rate_limit_probe_saw_unexpected_4xx"
    elif not saw_2xx:
        reason = "rate_limit_probe_no_success"
    elif not obs.saw_429:
        reason = "rate_limit_not_configured" if disabled else "rate_limit_probe_expected_429_missing"
    else:
        reason = "rate_limit_retry_after_missing"
    env_name = limit.source if limit is not None else f"{target.name}'s env file"
    remediation = {
        "rate_limit_not_configured": f"Set {RPM_KEY} and PROXY_RATE_LIMIT_BURST (and PROXY_RATE_LIMIT_PER_KEY_RPM/"
        f"BURST) in {env_name} and restart {target.name}.",
        "rate_limit_probe_expected_429_missing": f"{target.name} admitted more requests than {env_name} allows: "
        "restart it so it runs with that file, and check that one API process serves the tenant (each process "
        "keeps its own bucket) and nothing in front retries or fans out requests.",
        "rate_limit_probe_saw_5xx": f"{target.name} answered 5xx during the burst: read its log (an exhausted "
        "bucket must answer 429, never an error) and check what sits in front of it.",
        "rate_limit_probe_saw_unexpected_4xx": "The burst met a 4xx other than 429: check rateLimitProbe.path in "
        "the profile (a public route such as /capabilities needs no token; for another route set "
        "rateLimitProbe.authenticated and give an ops token with ops_read, GATES_NOOTERRA_OPS_TOKEN).",
        "rate_limit_retry_after_missing": "The 429 carried no retry-after: the API sets it (src/api/app.js:34710), "
        "so something in front of it strips the header; let it through.",
    }.get(reason)
    if disabled and not obs.saw_429:
        detail = f"; {limit.source if limit else ''} sets no {RPM_KEY}, so the API admits every request"
    elif obs.exceeded:
        detail = (
            f"; {obs.admitted} admitted where the declared limit admits at most {observed['admitsAtMost']}"
        )
    else:
        detail = "" if retry_after or not obs.saw_429 else "; the 429 carried no retry-after"
    expect(
        saw_2xx and obs.saw_429 and retry_after and not saw_5xx and not other_4xx,
        summary + detail,
        reason=reason,
        observed=observed,
        remediation=remediation,
        expected={
            "saw2xx": True,
            "saw429": True,
            "retryAfter": True,
            "saw5xx": False,
            "sawUnexpected4xx": False,
        },
    )


QUOTA_PREFIXES = ("PROXY_QUOTA_MAX_", "PROXY_QUOTA_PLATFORM_MAX_")


@check(
    "nooterra.quotas.configured",
    title="Tenant and platform quotas are configured",
    targets=_api_with_env,
    observe=lambda profile, _: _env_file(profile),
    remediation="Set at least one PROXY_QUOTA_MAX_* and one PROXY_QUOTA_PLATFORM_MAX_* to a positive limit "
    "in {name}'s env file (0 means unlimited).",
)
def test_quotas(target: Service, obs: FileContent) -> None:
    """Some tenant quota and some platform cap hold a positive value."""
    env = _env(obs, obs.path)
    limited = {
        prefix.rstrip("_"): sorted(k for k, v in env.items() if k.startswith(prefix) and live.positive_int(v))
        for prefix in QUOTA_PREFIXES
    }
    # PROXY_QUOTA_PLATFORM_MAX_* also starts with PROXY_QUOTA_ only through its own prefix
    missing = [p for p, keys in limited.items() if not keys]
    expect(
        not missing,
        f"{obs.path}: no positive {' and no positive '.join(p + '_*' for p in missing)}",
        reason="quotas_not_configured",
        observed=limited,
        expected=dict.fromkeys(limited, "at least one positive limit"),
    )


# --- staging and production --------------------------------------------------------------------


@check(
    "nooterra.env.staging_separated",
    title="Staging and production use different databases, secrets and signing keys",
    targets=_api_with_staging,
    observe=lambda profile, _: {
        "production": _env_file(profile),
        "staging": ReadFile(path=_cfg(profile).staging_env_file or ""),
    },
    remediation="Give staging its own database (or schema), its own secrets and its own signer keys (the "
    "file staging.env_file names against the API's); a staging compromise must not reach production.",
    applies_when="staging.env_file (the staging API env file)",
)
def test_staging_separated(target: Service, obs: dict[str, FileContent]) -> None:
    """No shared database+schema, no shared secret value, no shared signing key."""
    prod = _env(obs["production"], obs["production"].path)
    staging = _env(obs["staging"], obs["staging"].path)
    shared: list[str] = []
    same_db = prod.get("DATABASE_URL") == staging.get("DATABASE_URL")
    same_schema = (prod.get("PROXY_PG_SCHEMA") or "public") == (staging.get("PROXY_PG_SCHEMA") or "public")
    if same_db and same_schema:
        shared.append("database (DATABASE_URL and PROXY_PG_SCHEMA)")
    for key in sorted(set(prod) & set(staging)):
        if len(prod[key]) < MIN_SCRUB_LENGTH or prod[key] != staging[key]:
            continue  # short values are switches and ports, not secrets
        if "SIGN" in key.upper():
            shared.append(f"signing key {key}")
        elif is_secret_key(key) and key != "DATABASE_URL":
            shared.append(f"secret {key}")
    if prod.get("PROXY_OPS_TOKENS") and staging.get("PROXY_OPS_TOKENS"):
        p_tokens = {e.split(":", 1)[0].strip() for e in prod["PROXY_OPS_TOKENS"].split(";") if e.strip()}
        s_tokens = {e.split(":", 1)[0].strip() for e in staging["PROXY_OPS_TOKENS"].split(";") if e.strip()}
        if p_tokens & s_tokens and "secret PROXY_OPS_TOKENS" not in shared:
            shared.append("an ops token in PROXY_OPS_TOKENS")
    expect(
        not shared,
        f"staging ({obs['staging'].path}) shares with production: {', '.join(shared)}",
        reason="staging_production_shared",
        observed=shared,
        expected=[],
    )


# --- paid upstream -------------------------------------------------------------------------------


def _paid_request(profile: Profile, svc: Service) -> HttpGet:
    route = _cfg(profile).paid_route or "/"
    return service_request(svc, route)


@check(
    "nooterra.upstream.payment_challenge",
    title="The paid upstream answers an unpaid call with a 402 offer in both header forms",
    targets=_paid_upstream,
    observe=_paid_request,
    remediation="{name} must answer an unpaid tool call with 402 and the same parseable offer in "
    "x-payment-required and PAYMENT-REQUIRED (amount, currency, providerId, toolId).",
)
def test_payment_challenge(target: Service, obs: HttpResponse) -> None:
    """402; x-payment-required and PAYMENT-REQUIRED both present, equal, parseable, with a positive amount."""
    x_header = obs.header("x-payment-required")
    plain = next(
        (v for k, v in obs.headers if k == "PAYMENT-REQUIRED" or k.lower() == "payment-required"), None
    )
    offer, error = live.payment_offer(x_header) if x_header is not None else (None, "absent")
    amount = live.offer_amount(offer) if offer is not None else None
    problems = []
    if obs.status != 402:
        problems.append(f"answered {obs.status}, not 402")
    if x_header is None:
        problems.append("no x-payment-required header")
    elif error is not None:
        problems.append(f"x-payment-required does not parse: {error}")
    elif amount is None:
        problems.append("the offer has no positive amount")
    if plain is None:
        problems.append("no PAYMENT-REQUIRED header")
    elif x_header is not None and plain != x_header:
        problems.append("PAYMENT-REQUIRED differs from x-payment-required")
    expect(
        not problems,
        f"GET {obs.url}: {'; '.join(problems)}",
        reason="payment_challenge_missing" if obs.status != 402 else "payment_challenge_malformed",
        observed={
            "status": obs.status,
            "xPaymentRequired": x_header is not None,
            "paymentRequired": plain is not None,
            "amountCents": amount,
            "currency": (offer or {}).get("currency"),
        },
        expected={"status": 402, "xPaymentRequired": True, "paymentRequired": True, "amountCents": "> 0"},
    )
