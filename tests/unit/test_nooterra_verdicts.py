"""Verdicts on a Nooterra deployment that does what upstream documents: none of them may be false.

Each class pins one rule to the upstream behaviour it was derived from (file:line in the
docstrings); the last class re-reads the upstream snapshot itself, where it is available.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tarfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from conformance import nooterra_live as live
from conformance.checks import CheckFailed
from conformance.errors import Undetermined
from conformance.probes.http import HttpResponse
from conformance.probes.pgdrill import (
    MANIFEST_SCHEMA_VERSION,
    Scratch,
    UpgradeDrillRecord,
    manifest_problems,
    version_advanced,
)
from conformance.probes.ratelimit import BucketLimit, LimitBurstResult, bucket_limit
from conformance.profile import UpgradeDrill, load_profile
from conformance.suite import test_nooterra_live as live_checks
from conformance.suite import test_upgrade_drill as drill_checks
from gates.evaluate import evaluate
from gates.gate import expand, load_gate

SHARED = Path(os.environ.get("GATES_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared")
TARBALL = SHARED / "upstream" / "nooterra-515f3d33.tar.gz"

API = load_profile("nooterra", {"serving_mode": "self-host"}).service("api")

UPSTREAM_RULES = """
groups:
  - name: nooterra.rules
    rules:
      - alert: NooterraOutboxBacklogHigh
        expr: sum(outbox_pending_gauge) > 2000
        for: 10m
      - alert: NooterraReplayMismatchDetected
        expr: replay_mismatch_gauge > 0
        for: 5m
"""


def nooterra(**sets: str) -> Any:
    """The built-in nooterra profile with ``sets`` applied."""
    return load_profile("nooterra", {"serving_mode": "self-host", **sets})


class TestAlertSeries:
    def test_on_demand_series_absent_from_a_scrape_is_no_finding(self) -> None:
        """outbox_pending_gauge appears per kind only once a kind was pending (src/api/app.js:3945-3975)."""
        rules, problems = live.alert_rules(UPSTREAM_RULES)
        assert problems == []
        scrape = {"replay_mismatch_gauge"}
        assert live.unknown_series(rules, scrape) == {"NooterraOutboxBacklogHigh": ["outbox_pending_gauge"]}
        assert live.unknown_series(rules, scrape, on_demand=("outbox_pending_gauge",)) == {}

    def test_a_series_the_api_never_emits_still_fails(self) -> None:
        """An on-demand list does not excuse a series nobody emits."""
        rules, _ = live.alert_rules(UPSTREAM_RULES.replace("replay_mismatch_gauge", "replay_mismatch_total"))
        unknown = live.unknown_series(rules, {"replay_mismatch_gauge"}, on_demand=("outbox_pending_gauge",))
        assert unknown == {"NooterraReplayMismatchDetected": ["replay_mismatch_total"]}

    def test_the_profile_declares_the_outbox_gauge_on_demand(self) -> None:
        """The nooterra profile lists outbox_pending_gauge as emitted on demand."""
        assert nooterra().nooterra.on_demand_series == ("outbox_pending_gauge",)


class TestBucketLimit:
    """The tenant bucket as src/api/app.js:672-684 builds it from the environment."""

    def test_burst_defaults_to_rpm(self) -> None:
        """An unset PROXY_RATE_LIMIT_BURST means a bucket of RPM tokens (app.js:676-680)."""
        limit = bucket_limit({"PROXY_RATE_LIMIT_RPM": "600"}, "api.env")
        assert limit == BucketLimit(rpm=600, burst=600, source="api.env")

    def test_unset_rpm_disables_the_limit(self) -> None:
        """No PROXY_RATE_LIMIT_RPM: takeRateLimitToken admits everything (app.js:1890)."""
        limit = bucket_limit({"PROXY_RATE_LIMIT_BURST": "60"}, "api.env")
        assert limit is not None
        assert limit.rpm == 0

    @pytest.mark.parametrize(
        "env", [{"PROXY_RATE_LIMIT_RPM": "-5"}, {"PROXY_RATE_LIMIT_RPM": "10", "PROXY_RATE_LIMIT_BURST": "x"}]
    )
    def test_values_the_api_refuses_give_no_limit(self, env: dict[str, str]) -> None:
        """Values the API refuses to start with (app.js:673-683) yield no limit to size a burst from."""
        assert bucket_limit(env, "api.env") is None

    def test_the_bound_grows_with_the_time_a_burst_took(self) -> None:
        """A slow burst is allowed more admissions: slowness can never turn into a failure."""
        limit = BucketLimit(rpm=600, burst=60, source="api.env")
        assert limit.admits_at_most(0) == 60
        assert limit.admits_at_most(1000) == 70
        assert limit.admits_at_most(60_000) == 660


class TestRateLimitRoute:
    """The burst goes to a cheap route the limiter charges, so a production-sized bucket can be emptied."""

    def test_the_profile_bursts_the_public_static_route(self) -> None:
        """GET /capabilities: charged to the tenant bucket before authentication (app.js:34704-34714), public
        (app.js:34721) and static (app.js:35862); no ops token is sent, and none is needed to select the check."""
        profile = nooterra(ops_token="")
        probe = profile.nooterra.rate_limit
        assert (probe.path, probe.authenticated, probe.tenant) == (
            "/capabilities",
            False,
            "tenant_gates_rate_probe",
        )
        assert live_checks._api_with_rate_probe(profile) == [profile.service("api")]
        burst = live_checks._burst(profile, profile.service("api"))
        assert burst.request.url.endswith("/capabilities")
        assert dict(burst.request.headers) == {"x-proxy-tenant-id": "tenant_gates_rate_probe"}

    def test_an_authenticated_route_needs_the_token(self) -> None:
        """A declared authenticated route sends the ops token, and without one the check is not selected."""
        base = nooterra(ops_token="tok")
        cfg = base.nooterra
        authed = dataclasses.replace(cfg, rate_limit=dataclasses.replace(cfg.rate_limit, authenticated=True))
        profile = dataclasses.replace(base, nooterra=authed)
        assert ("x-proxy-ops-token", "tok") in live_checks._burst(
            profile, profile.service("api")
        ).request.headers
        untokened = dataclasses.replace(profile, nooterra=dataclasses.replace(authed, ops_token=""))
        assert live_checks._api_with_rate_probe(untokened) == []


class TestStagingNotRequired:
    def test_without_staging_env_file_nooterra_live_does_not_require_it(self) -> None:
        """Separate staging is "Recommended production shape" (MINIMUM_PRODUCTION_TOPOLOGY.md:24-29), not a minimum."""
        exp = expand(load_gate("nooterra-live", profile="nooterra"), nooterra())
        assert "nooterra.env.staging_separated" not in exp.unmatched
        assert not any(i.check == "nooterra.env.staging_separated" for i in exp.instances)

    def test_declared_staging_is_compared(self) -> None:
        """With staging.env_file the check has its target and the gate requires it."""
        exp = expand(
            load_gate("nooterra-live", profile="nooterra"), nooterra(**{"staging.env_file": "/s.env"})
        )
        assert "nooterra.env.staging_separated[api]" in {i.id for i in exp.instances}

    def test_an_unmatched_requirement_is_counted_and_names_its_setting(self) -> None:
        """A gate that does require it of a profile without staging counts it not run and names staging.env_file."""
        gate = load_gate("nooterra-live", profile="nooterra")
        requires = tuple(
            dataclasses.replace(r, optional=False) if r.check == "nooterra.env.staging_separated" else r
            for r in gate.requires
        )
        strict = dataclasses.replace(gate, requires=requires)
        exp = expand(strict, nooterra(ops_token="tok_unit"))
        assert exp.unmatched == ("nooterra.env.staging_separated",)
        ev = evaluate(strict, exp, {})
        entry = next(c for c in ev.checks if c["id"] == "nooterra.env.staging_separated")
        assert entry["status"] == "not_run"
        assert entry["failureCode"] == "no_target"
        assert ev.verdict["notRunChecks"] == ev.verdict["totalChecks"] == len(ev.checks)
        issue = next(b for b in ev.blocking if b["checkId"] == "nooterra.env.staging_separated")
        assert "staging.env_file" in issue["reason"]
        assert "staging.env_file" in issue["remediation"]


class TestProfileDefaults:
    def test_a_plain_run_writes_the_roll_up(self) -> None:
        """gates run --profile nooterra (no --gate) includes production-readiness."""
        assert "production-readiness" in nooterra().gates

    def test_drill_defaults_are_upstreams(self) -> None:
        """Upstream records migrations in proxy_migrations(id) (src/db/migrate.js:20-23) and its
        maintenance loop writes ops_audit while the drill runs."""
        drill = nooterra(**{"drill.migrate_command": "true"}).upgrade_drill
        assert (drill.migrations_table, drill.migrations_column, drill.live_tables) == (
            "proxy_migrations",
            "id",
            ("ops_audit",),
        )


# --- against the upstream snapshot ------------------------------------------------------------

# Where each component reads its environment (and the documents that name its settings).
READERS = {
    "api": ("src/core/config.js", "src/api/app.js", "src/api/server.js"),
    "maintenance": ("src/core/config.js", "src/api/maintenance.js"),
    "magic-link": ("services/magic-link/src/server.js", "services/magic-link/src/tenant-settings.js"),
    "gateway": ("services/x402-gateway/src/server.js",),
    "upstream": ("services/x402-gateway/examples/upstream-mock.js",),
}
DOCS = (
    "docs/ops/MINIMUM_PRODUCTION_TOPOLOGY.md",
    "deploy/compose/nooterra-self-host.topology.yml",
    "docs/CONFIG.md",  # PROXY_OPS_TOKEN (legacy), l.79
)


@cache
def _upstream() -> dict[str, str]:
    wanted = {f"nooterra/{p}" for paths in READERS.values() for p in paths} | {
        f"nooterra/{p}" for p in (*DOCS, "src/db/migrate.js")
    }
    out: dict[str, str] = {}
    with tarfile.open(TARBALL) as tar:
        for member in tar:
            if member.name in wanted:
                handle = tar.extractfile(member)
                assert handle is not None
                out[member.name.removeprefix("nooterra/")] = handle.read().decode("utf-8")
    return out


@pytest.mark.skipif(
    not TARBALL.is_file() and not os.environ.get("CI"), reason=f"no upstream snapshot at {TARBALL}"
)
class TestAgainstUpstream:
    def test_every_env_key_is_read_by_its_component_and_documented(self) -> None:
        """Each key the profile requires is read by that component's code and named by upstream's docs."""
        src = _upstream()
        docs = "\n".join(src[d] for d in DOCS)
        wrong: list[str] = []
        for env in nooterra().env_files:
            code = "\n".join(src[p] for p in READERS[env.name])
            keys = (
                [k for k, _ in env.values] + list(env.keys) + [k for k, _ in env.patterns] + list(env.absent)
            )
            for key in keys:
                if not re.search(rf"process\.env\.{key}\b|[\"']{key}[\"']", code):
                    wrong.append(f"{env.name}: {key} is read by no upstream reader")
                if not re.search(rf"\b{key}\b", docs) and not key.startswith("PROXY_RATE_LIMIT_"):
                    wrong.append(
                        f"{env.name}: {key} is named by none of the topology doc, the compose file and CONFIG.md"
                    )
        assert wrong == []

    def test_rate_limit_keys_are_the_documented_family(self) -> None:
        """The topology doc requires PROXY_RATE_LIMIT_* per tenant and per key (l.80)."""
        assert "Rate limits enabled (`PROXY_RATE_LIMIT_*`, per-tenant and per-key)" in _upstream()[DOCS[0]]

    def test_migrations_table_is_upstreams(self) -> None:
        """The drill's default migrations table and column are the ones src/db/migrate.js creates."""
        assert (
            "CREATE TABLE IF NOT EXISTS proxy_migrations (\n        id TEXT PRIMARY KEY"
            in _upstream()["src/db/migrate.js"]
        )


def _drill_record(
    before: dict[str, Any], after: dict[str, Any] | None, exit_code: int = 0
) -> UpgradeDrillRecord:
    ddl = {"sha256": "d" * 64}
    return UpgradeDrillRecord(
        source="proxy.nooterra", scratch=Scratch(database="proxy", schema="nooterra_gates_restore"),
        before={"version": before, "ddl": ddl}, after={}, backup={}, manifest=None, restore=None,
        migration={"command": "migrate", "exitCode": exit_code, "timedOut": False, "stdout": "", "stderr": "",
                   "snapshot": {"version": after, "ddl": ddl}},
        rollback=None, cleanup={}, outside_before=(), outside_after=(), live_tables=(), seconds=1.0,
    )  # fmt: skip


def _drill_target(source: str, target: str) -> UpgradeDrill:
    profile = nooterra(**{"drill.migrate_command": "migrate", "drill.source_release": source,
                          "drill.target_release": target})  # fmt: skip
    assert profile.upgrade_drill is not None
    return profile.upgrade_drill


V33 = {"table": "proxy_migrations", "max": "0033_x.sql", "applied": 33}
V34 = {"table": "proxy_migrations", "max": "0034_y.sql", "applied": 34}


class TestMigrationAdvances:
    """upgrade.drill.migration_advances: an upgrade with nothing to migrate is an upgrade."""

    def test_same_release_with_nothing_pending_passes(self) -> None:
        """Re-applying the running release's start-up migration changes nothing, and that passes."""
        drill_checks.test_migration_advances(_drill_target("515f3d33", "515f3d33"), _drill_record(V33, V33))

    def test_same_release_that_migrates_still_passes(self) -> None:
        """A source release that had not finished its own migrations may apply them now."""
        drill_checks.test_migration_advances(_drill_target("515f3d33", "515f3d33"), _drill_record(V33, V34))

    def test_different_release_that_applies_nothing_fails_naming_the_settings(self) -> None:
        """A new release that migrates nothing fails, and the remediation names both release settings."""
        with pytest.raises(CheckFailed) as failed:
            drill_checks.test_migration_advances(
                _drill_target("515f3d33", "0b897f28"), _drill_record(V33, V33)
            )
        assert failed.value.reason == "migration_not_advanced"
        assert failed.value.remediation is not None
        assert "drill.target_release" in failed.value.remediation
        assert "drill.source_release" in failed.value.remediation

    def test_a_failing_migration_fails_even_on_the_same_release(self) -> None:
        """A non-zero exit is a failure whether or not anything was pending: the check can still fail."""
        with pytest.raises(CheckFailed) as failed:
            drill_checks.test_migration_advances(
                _drill_target("a", "a"), _drill_record(V33, V33, exit_code=1)
            )
        assert failed.value.reason == "migration_failed"
        assert failed.value.remediation is not None
        assert "drill.migrate_command" in failed.value.remediation

    def test_same_release_that_loses_its_table_fails(self) -> None:
        """The same release may not leave the copy without its migrations table."""
        with pytest.raises(CheckFailed):
            drill_checks.test_migration_advances(_drill_target("a", "a"), _drill_record(V33, None))

    def test_file_named_migrations_advance_by_count(self) -> None:
        """Upstream names migrations by file; one more applied under the same newest name is an advance."""
        assert version_advanced(V33, {**V33, "applied": 34})
        assert not version_advanced(V33, V33)

    def test_a_manifest_may_name_one_release_twice(self) -> None:
        """The playbook records sourceRelease and targetRelease (Step 1.4) without asking them to differ."""
        manifest = {"schemaVersion": MANIFEST_SCHEMA_VERSION, "sourceRelease": "515f3d33", "targetRelease": "515f3d33",
                    "artifacts": [{"path": "postgres/s.sql", "sha256": "a" * 64}]}  # fmt: skip
        assert manifest_problems(manifest) == []


def _burst(statuses: dict[int, int], *, limit: BucketLimit | None, admitted: int, exceeded: bool = False,
           retry_after: str | None = "1", elapsed_ms: float = 500.0) -> LimitBurstResult:  # fmt: skip
    return LimitBurstResult(
        url="http://api/ops/status", sent=sum(statuses.values()), admitted=admitted, elapsed_ms=elapsed_ms,
        statuses=tuple(sorted(statuses.items())), first_429_retry_after=retry_after if 429 in statuses else None,
        saw_429=429 in statuses, limit=limit, limit_error=None if limit else "no env file", exceeded=exceeded,
        out_of_time=False,
    )  # fmt: skip


LIMIT = BucketLimit(rpm=600, burst=60, source="/etc/nooterra/api.env")


class TestRateLimitVerdicts:
    """nooterra.rate_limit.enforced decides from the declared limit, never from the certifier's speed."""

    def test_a_429_with_retry_after_passes(self) -> None:
        """Some 2xx, then a 429 carrying retry-after (src/api/app.js:34703-34714)."""
        live_checks.test_rate_limit(API, _burst({200: 61, 429: 1}, limit=LIMIT, admitted=61))

    def test_a_burst_too_slow_to_empty_the_bucket_is_undetermined(self) -> None:
        """No 429 while still within what the limit admits in that time: the certifier was slow, not the API wrong."""
        with pytest.raises(Undetermined, match="too slow to empty the bucket"):
            live_checks.test_rate_limit(API, _burst({200: 120}, limit=LIMIT, admitted=120, elapsed_ms=20_000))

    def test_more_admitted_than_the_limit_allows_fails(self) -> None:
        """Past burst + elapsed * rpm / 60000 without a 429 the limit is not enforced."""
        with pytest.raises(CheckFailed) as failed:
            live_checks.test_rate_limit(API, _burst({200: 80}, limit=LIMIT, admitted=80, exceeded=True))
        assert failed.value.reason == "rate_limit_probe_expected_429_missing"
        assert "admits at most 65" in failed.value.message

    def test_an_unset_limit_fails_naming_the_setting(self) -> None:
        """No PROXY_RATE_LIMIT_RPM: the API admits everything (app.js:1890); the fix names the key and the file."""
        disabled = BucketLimit(rpm=0, burst=0, source="/etc/nooterra/api.env")
        with pytest.raises(CheckFailed) as failed:
            live_checks.test_rate_limit(API, _burst({200: 120}, limit=disabled, admitted=120))
        assert failed.value.reason == "rate_limit_not_configured"
        assert failed.value.remediation is not None
        assert "PROXY_RATE_LIMIT_RPM" in failed.value.remediation
        assert "/etc/nooterra/api.env" in failed.value.remediation

    def test_a_missing_retry_after_does_not_point_at_the_limit_settings(self) -> None:
        """The limit is set and works: the fix is whatever strips retry-after, not PROXY_RATE_LIMIT_*."""
        with pytest.raises(CheckFailed) as failed:
            live_checks.test_rate_limit(
                API, _burst({200: 61, 429: 1}, limit=LIMIT, admitted=61, retry_after=None)
            )
        assert failed.value.reason == "rate_limit_retry_after_missing"
        assert failed.value.remediation is not None
        assert "PROXY_RATE_LIMIT" not in failed.value.remediation

    def test_without_a_readable_limit_a_missing_429_is_undetermined(self) -> None:
        """Without the configured limit a missing 429 cannot tell a missing limit from a large one."""
        with pytest.raises(Undetermined, match="without the configured limit"):
            live_checks.test_rate_limit(API, _burst({200: 120}, limit=None, admitted=120))

    def test_a_5xx_fails_whatever_the_limit(self) -> None:
        """An exhausted bucket must never answer 5xx."""
        with pytest.raises(CheckFailed) as failed:
            live_checks.test_rate_limit(API, _burst({200: 30, 503: 1}, limit=None, admitted=31))
        assert failed.value.reason == "rate_limit_probe_saw_5xx"


def _ops_status(finance: bool, money: bool) -> HttpResponse:
    body = {"ok": True, "maintenance": {"financeReconciliation": {"enabled": finance},
                                        "moneyRailReconciliation": {"enabled": money}}}  # fmt: skip
    return HttpResponse(url="http://api/ops/status", host_header=None, status=200, headers=(),
                        body=json.dumps(body).encode(), elapsed_s=0.01)  # fmt: skip


class TestRemediationsNameWhatToChange:
    def test_schedulers_name_only_the_disabled_switch(self) -> None:
        """Only the switch that is off is named; the one already set to 1 is not."""
        with pytest.raises(CheckFailed) as failed:
            live_checks.test_maintenance_schedulers(API, _ops_status(finance=True, money=False))
        assert (
            failed.value.remediation
            == "Set PROXY_MONEY_RAIL_RECONCILE_ENABLED=1 in the API's env file and restart it."
        )

    def test_an_unreachable_onboarding_proxy_is_not_told_to_set_its_url(self) -> None:
        """502 ONBOARDING_PROXY_UNREACHABLE: the URL is set; the fix is where it points."""
        answer = HttpResponse(url="http://api/v1/public/auth-mode", host_header=None, status=502, headers=(),
                              body=b'{"code":"ONBOARDING_PROXY_UNREACHABLE"}', elapsed_s=0.01)  # fmt: skip
        with pytest.raises(CheckFailed) as failed:
            live_checks.test_auth_mode(API, answer)
        assert failed.value.remediation is not None
        assert failed.value.remediation.startswith("PROXY_ONBOARDING_BASE_URL is set")
