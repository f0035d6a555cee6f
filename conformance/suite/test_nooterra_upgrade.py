"""Nooterra self-host upgrade and migration: the runbook, startup migrations, and a current, intact topology report."""

from __future__ import annotations

from conformance import clock
from conformance import nooterra as rules
from conformance.checks import check
from conformance.errors import Undetermined
from conformance.nooterra import FileRead
from conformance.profile import Bundle, Profile
from conformance.suite._nooterra import bundle_with, conclude, json_of, read

_GREEN = "upgrade.topology_report.green[bundle]"


@check(
    "upgrade.playbook.complete",
    title="The upgrade and migration playbook has every required step",
    targets=bundle_with("playbook"),
    observe=read("playbook"),
    remediation="Give the playbook its title and the sections Preconditions, Step 1 (backup and evidence snapshot), "
    "Step 2 (apply upgrade), Step 3 (migration validation gate), Step 4 (smoke and readiness) and Rollback.",
)
def test_playbook_complete(target: Bundle, obs: FileRead) -> None:
    """The playbook exists and carries every required heading."""
    conclude(rules.upgrade_playbook_present_and_complete(obs), expected="every required playbook section")


@check(
    "upgrade.compose.migrate_on_startup",
    title="The compose topology migrates the database on API startup",
    targets=bundle_with("compose"),
    observe=read("compose"),
    remediation='Set PROXY_MIGRATE_ON_STARTUP: "1" on the api service.',
)
def test_compose_migrate_on_startup(target: Bundle, obs: FileRead) -> None:
    """The compose api service migrates on startup."""
    conclude(rules.compose_migrate_on_startup_enabled(obs), expected='PROXY_MIGRATE_ON_STARTUP: "1"')


@check(
    "upgrade.helm_values.migrate_on_startup",
    title="The Helm values migrate the database on startup by default",
    targets=bundle_with("helmValues"),
    observe=read("helmValues"),
    remediation="Set store.migrateOnStartup: true in the chart's values.yaml.",
)
def test_helm_values_migrate_on_startup(target: Bundle, obs: FileRead) -> None:
    """The chart defaults migrateOnStartup to true."""
    conclude(rules.helm_values_migrate_on_startup_enabled(obs), expected="migrateOnStartup: true")


@check(
    "upgrade.api_template.migrate_env_wired",
    title="The Helm API deployment passes the migrate switch to the API",
    targets=bundle_with("apiTemplate"),
    observe=read("apiTemplate"),
    remediation="Add an env entry named PROXY_MIGRATE_ON_STARTUP, fed from values, to the API deployment template.",
)
def test_api_template_migrate_env_wired(target: Bundle, obs: FileRead) -> None:
    """The API template sets PROXY_MIGRATE_ON_STARTUP."""
    conclude(rules.api_template_migrate_env_wired(obs), expected="name: PROXY_MIGRATE_ON_STARTUP")


@check(
    "upgrade.topology_report.green",
    title="The self-host topology bundle gate report is present and green",
    targets=bundle_with("topologyReport"),
    observe=read("topologyReport"),
    remediation="Run the self-host topology bundle gate first and fix what it reports; the upgrade may proceed "
    "only on a green topology report.",
)
def test_topology_report_green(target: Bundle, obs: FileRead) -> None:
    """The topology report is JSON, of its schema version, with verdict.ok true."""
    conclude(rules.self_host_topology_bundle_gate_green(obs), expected="verdict.ok true")


@check(
    "upgrade.topology_report.hash_valid",
    title="The topology report's artifactHash recomputes from its content",
    targets=bundle_with("topologyReport"),
    observe=read("topologyReport"),
    remediation="Regenerate the topology report with the topology gate; never edit a gate report by hand.",
)
def test_topology_report_hash_valid(target: Bundle, obs: FileRead) -> None:
    """The recorded artifactHash equals the hash of the report's deterministic core."""
    value = json_of(obs, _GREEN)
    recorded = rules.member(value, "artifactHash")
    conclude(rules.topology_report_hash_valid(obs, value), expected=recorded)


@check(
    "upgrade.topology_report.sources_current",
    title="The topology report certified the bundle's current compose topology and env example",
    targets=bundle_with("topologyReport", "compose", "envExample"),
    observe=read("topologyReport", "compose", "envExample"),
    remediation="The bundle changed after the topology gate ran: re-run the topology gate against the current files.",
)
def test_topology_report_sources_current(target: Bundle, obs: dict[str, FileRead]) -> None:
    """The report's sources.compose and sources.envExample sha256 equal the current files' digests."""
    value = json_of(obs["topologyReport"], _GREEN)
    current = {"compose": obs["compose"], "envExample": obs["envExample"]}
    conclude(
        rules.topology_report_sources_current(obs["topologyReport"], value, current),
        expected={k: v.sha256 for k, v in current.items()},
    )


def _max_age(bundle: Bundle) -> int:
    found = bundle.file("topologyReport")
    if found is None or found.max_age_s is None:
        raise Undetermined("the bundle declares no maxAgeSeconds for topologyReport")
    return found.max_age_s


def _fresh_targets(profile: Profile) -> list[Bundle]:
    """The bundle, when its topology report declares a maximum age."""
    bundle = profile.bundle
    report = bundle.file("topologyReport") if bundle is not None else None
    return [bundle] if bundle is not None and report is not None and report.max_age_s else []


@check(
    "upgrade.topology_report.fresh",
    title="The topology report is recent",
    targets=_fresh_targets,
    observe=read("topologyReport"),
    remediation="Re-run the topology gate right before the upgrade; an old report says nothing about today's bundle.",
)
def test_topology_report_fresh(target: Bundle, obs: FileRead) -> None:
    """The report's generatedAt lies within maxAgeSeconds of now (and not in the future)."""
    value = json_of(obs, _GREEN)
    max_age = _max_age(target)
    conclude(
        rules.topology_report_fresh(obs, value, now=clock.now(), max_age_s=max_age),
        expected=f"generated at most {max_age} s ago",
    )
