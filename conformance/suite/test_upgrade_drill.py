"""The upgrade drill: a backup that restores, a migration that advances, a rollback that restores, nothing left.

One drill run (see `conformance.probes.pgdrill`) feeds every check here. It works on a scratch copy of the
declared PostgreSQL schema, so the production schema is only read; the checks compare what the drill
snapshotted at backup time (the source), on the restored copy, after the migration, after the rollback
restore, and on the source once more at the end.
"""

from __future__ import annotations

from typing import Any

from conformance.canonical import canonical_hash
from conformance.checks import check, expect
from conformance.errors import Undetermined
from conformance.probes.pgdrill import (
    MANIFEST_SCHEMA_VERSION,
    PgUpgradeDrill,
    UpgradeDrillRecord,
    differences,
    manifest_problems,
    summary,
    version_advanced,
)
from conformance.profile import Profile, UpgradeDrill
from conformance.suite import _select

SAME = (
    "equal to the source at backup time: every table's row count and sha256, every sequence, every DDL object"
)


def drill(profile: Profile, target: UpgradeDrill) -> PgUpgradeDrill:
    """The drill the profile's ``upgradeDrill`` describes, on its postgres service."""
    svc = profile.service(target.service)
    return PgUpgradeDrill(
        address=svc.bind,
        port=svc.port,
        database=svc.database or "",
        user=svc.db_user or "",
        password=svc.password,
        schema=target.schema,
        scratch_database=target.scratch_database,
        scratch_schema=target.scratch_schema,
        migrate=target.migrate,
        rollback=target.rollback,
        migrations_table=target.migrations_table,
        migrations_column=target.migrations_column,
        pg_bindir=target.pg_bindir,
        live_tables=target.live_tables,
        source_release=target.source_release,
        target_release=target.target_release,
        schema_env=target.schema_env,
        url_env=target.url_env,
        timeout_s=target.timeout_s,
    )


def _scratch(obs: UpgradeDrillRecord) -> dict[str, str]:
    return {"database": obs.scratch.database, "schema": obs.scratch.schema}


def _tails(step: dict[str, Any]) -> dict[str, str]:
    """Command output for a report: only of a step that failed (timings and noise would change the hash)."""
    return {k: step[k][-600:] for k in ("stdoutTail", "stderrTail") if step.get(k)}


def _backup_missing(target: UpgradeDrill) -> Undetermined:
    return Undetermined(
        f"the drill has no backup to restore; see upgrade.drill.backup_manifest[{target.name}]"
    )


@check(
    "upgrade.drill.backup_manifest",
    title="pg_dump backs up the schema completely and the backup manifest records it (SelfHostUpgradeBackupManifest.v1)",
    targets=_select.upgrade_drills,
    observe=drill,
    remediation="Make pg_dump --schema=SCHEMA --no-owner --no-privileges succeed on the host against {name} (with a "
    "client of the server's version: drill.pg_bindir), and record the immutable ids of the running and the "
    "target release (drill.source_release, drill.target_release).",
    drill=True,
)
def test_backup_manifest(target: UpgradeDrill, obs: UpgradeDrillRecord) -> None:
    """pg_dump exits 0 with a complete, non-empty dump; the manifest satisfies its schema and names both releases."""
    b = obs.backup
    problems: list[str] = []
    if b["exitCode"] != 0:
        problems.append(f"pg_dump exited {b['exitCode']}")
    elif b["bytes"] == 0:
        problems.append("pg_dump wrote an empty file")
    elif not b["complete"]:
        problems.append("the dump ends without pg_dump's completion trailer (it is truncated)")
    reason = "backup_failed" if problems else "backup_manifest_invalid"
    manifest = obs.manifest
    if manifest is None:
        problems.append("no manifest: the backup produced no artifact to record")
    else:
        problems += manifest_problems(manifest)
    observed: dict[str, Any] = {
        "message": "; ".join(problems) or f"{b['artifact']}: {b['bytes']} bytes, sha256 {b['sha256']}",
        "manifest": manifest,
        "manifestSha256": canonical_hash(manifest) if manifest is not None else None,
        "backup": {k: b[k] for k in ("command", "artifact", "exitCode", "bytes", "complete")},
        "problems": problems,
    }
    if b["exitCode"] != 0 or not b["complete"]:
        observed["backup"].update(_tails(b))
    expect(not problems, f"{obs.source}: {observed['message']}", reason=reason, observed=observed,
           expected={"schemaVersion": MANIFEST_SCHEMA_VERSION, "pg_dump": "exit 0, complete dump",
                     "artifacts": "each backup artifact: path relative to the run directory, sha256 of its bytes",
                     "releases": "sourceRelease and targetRelease: the release ids"})  # fmt: skip


@check(
    "upgrade.drill.restore_matches",
    title="The backup restores into a scratch schema with every table, row, sequence and DDL object of the source",
    targets=_select.upgrade_drills,
    observe=drill,
    remediation="The backup does not restore what was backed up: compare the differences in this report, check the "
    "backup tooling on the host (pg_dump wrappers, filters, a client older than the server) and restore with psql "
    "-v ON_ERROR_STOP=1 --single-transaction.",
    drill=True,
)
def test_restore_matches(target: UpgradeDrill, obs: UpgradeDrillRecord) -> None:
    """psql restores the dump in one transaction, and the copy equals the source snapshot taken with the dump."""
    restore = obs.restore
    if restore is None:
        raise _backup_missing(target)
    base: dict[str, Any] = {
        "backup": {"path": obs.backup["artifact"], "sha256": obs.backup["sha256"]},
        "scratch": _scratch(obs),
    }
    if restore["exitCode"] != 0:
        message = f"restoring {obs.backup['artifact']} into {obs.scratch.database}.{obs.scratch.schema} exited {restore['exitCode']}"
        expect(False, f"{obs.source}: {message}", reason="restore_failed",
               observed={"message": message, **base, "exitCode": restore["exitCode"], **_tails(restore)},
               expected="psql restores the backup with exit 0")  # fmt: skip
    diffs = differences(obs.before, restore["snapshot"], live=obs.live_tables)
    message = (
        f"the restored copy differs from the source in {len(diffs)} place(s): {'; '.join(diffs[:3])}"
        if diffs
        else f"the copy in {obs.scratch.database}.{obs.scratch.schema} equals the source"
    )
    expect(not diffs, f"{obs.source}: {message}", reason="restore_differs",
           observed={"message": message, **base, "source": summary(obs.before), "copy": summary(restore["snapshot"]),
                     "differences": diffs},
           expected=SAME)  # fmt: skip


def _unchanged(before: dict[str, Any] | None, after: dict[str, Any] | None) -> bool:
    """Whether the schema version is what it was (same latest migration, same number applied)."""
    keys = ("max", "applied")
    return before is not None and after is not None and all(before.get(k) == after.get(k) for k in keys)


@check(
    "upgrade.drill.migration_advances",
    title="The target release's migration runs on the restored copy and moves its schema version forward",
    targets=_select.upgrade_drills,
    observe=drill,
    remediation="See the failure's own remediation: a migrate command that failed, or a target release that "
    "applied nothing although it is not the source release.",
    drill=True,
)
def test_migration_advances(target: UpgradeDrill, obs: UpgradeDrillRecord) -> None:
    """The migrate command exits 0 and the schema version moves forward, unless source and target are one release.

    Upgrading to the release that already runs leaves nothing to migrate: that passes, with
    ``migrationPending: false``, as long as the command still exits 0 and leaves the version as it was.
    """
    m = obs.migration
    if m is None:
        raise Undetermined(
            f"the drill did not migrate: the backup or its restore failed; see upgrade.drill.restore_matches[{target.name}]"
        )
    before = obs.before["version"]
    if before is None:
        raise Undetermined(
            f"the source schema {obs.source} has no {target.migrations_table} table to read its version from; "
            "set drill.migrations_table (and drill.migrations_column)"
        )
    after = m["snapshot"]["version"]
    same_release = target.source_release == target.target_release
    advanced = version_advanced(before, after)
    ok = m["exitCode"] == 0 and (advanced or (same_release and _unchanged(before, after)))
    observed: dict[str, Any] = {
        "command": m["command"],
        "exitCode": m["exitCode"],
        "scratch": _scratch(obs),
        "sourceRelease": target.source_release,
        "targetRelease": target.target_release,
        "migrationPending": advanced or not same_release,
        "versionBefore": before,
        "versionAfter": after,
        "ddlChanged": m["snapshot"]["ddl"]["sha256"] != obs.before["ddl"]["sha256"],
    }
    remediation = None
    if m["exitCode"] != 0:
        reason = "migration_timed_out" if m["timedOut"] else "migration_failed"
        message = f"{m['command']!r} exited {m['exitCode']}" + (" (timed out)" if m["timedOut"] else "")
        remediation = (
            "The target release's migration (drill.migrate_command) failed on the restored copy: read its output "
            "in this report; it finds the copy in PROXY_PG_SCHEMA, DATABASE_URL and the PG* variables."
            + (" Raise drill.timeout if it only needs longer." if m["timedOut"] else "")
        )
    elif advanced:
        reason, message = "", f"schema version {before['max']} -> {after['max'] if after else '?'}"
    elif same_release and _unchanged(before, after):
        reason = ""
        message = (
            f"no migration was pending: source and target are the same release {target.target_release!r}"
        )
    else:
        reason = "migration_not_advanced"
        message = f"schema version {before['max']} -> {after['max'] if after else 'no migrations table'}"
        remediation = (
            f"The target release {target.target_release!r} applied no migration to the copy of "
            f"{target.source_release!r}: check that it ships its migrations and that drill.migrate_command runs "
            "them; if the two ids name the same release, set drill.target_release equal to drill.source_release."
            if not same_release
            else "The same release changed its own schema version on a re-run: its start-up migration is not "
            "idempotent (drill.migrate_command)."
        )
    if not ok:
        observed.update(_tails(m))
    observed = {"message": message, **observed}
    want = (
        f"greater than {before['max']}"
        if not same_release
        else f"{before['max']} or greater (same release: nothing need be pending)"
    )
    expect(ok, f"{obs.scratch.database}.{obs.scratch.schema}: {message}", reason=reason or "migration_not_advanced",
           observed=observed, expected={"exitCode": 0, "versionAfter": want}, remediation=remediation)  # fmt: skip


@check(
    "upgrade.drill.rollback_restores",
    title="The rollback path restores the backup, checked against its manifest, to exactly the source",
    targets=_select.upgrade_drills,
    observe=drill,
    remediation="Rolling back must give the data back as it was: keep the backup artifact unchanged after the "
    "manifest records it, and make the source release's start-up (drill.rollback_command) leave a restored "
    "database as it finds it.",
    drill=True,
)
def test_rollback_restores(target: UpgradeDrill, obs: UpgradeDrillRecord) -> None:
    """The artifact's sha256 equals the manifest's; restore and rollback command exit 0; the copy equals the source."""
    rb = obs.rollback
    if rb is None:
        raise _backup_missing(target)
    command = rb.get("command")
    base: dict[str, Any] = {
        "artifact": {
            "path": obs.backup["artifact"],
            "manifestSha256": obs.backup["sha256"],
            "sha256": rb["artifactSha256"],
        },
        "scratch": _scratch(obs),
        "rollbackCommand": {"command": command["command"], "exitCode": command["exitCode"]}
        if command
        else None,
    }
    if rb["exitCode"] == 98:
        message = f"{obs.backup['artifact']} no longer matches the manifest (sha256 {rb['artifactSha256'] or 'unreadable'})"
        expect(False, message, reason="rollback_artifact_mismatch", observed={"message": message, **base},
               expected="the artifact's sha256 equals the manifest's")  # fmt: skip
    if rb["exitCode"] != 0:
        message = f"the rollback restore exited {rb['exitCode']}"
        expect(False, message, reason="rollback_restore_failed", observed={"message": message, **base, **_tails(rb)},
               expected="psql restores the backup with exit 0")  # fmt: skip
    if command is not None and command["exitCode"] != 0:
        message = f"the rollback command {command['command']!r} exited {command['exitCode']}"
        expect(False, message, reason="rollback_command_failed",
               observed={"message": message, **base, **_tails(command)}, expected={"exitCode": 0})  # fmt: skip
    diffs = differences(obs.before, rb["snapshot"], live=obs.live_tables)
    message = (
        f"after the rollback the copy differs from the source in {len(diffs)} place(s): {'; '.join(diffs[:3])}"
        if diffs
        else "after the rollback the copy equals the source"
    )
    expect(not diffs, f"{obs.source}: {message}", reason="rollback_differs",
           observed={"message": message, **base, "copy": summary(rb["snapshot"]), "differences": diffs},
           expected=SAME)  # fmt: skip


@check(
    "upgrade.drill.scratch_removed",
    title="The drill leaves no scratch schema, scratch directory or other new object behind",
    targets=_select.upgrade_drills,
    observe=drill,
    remediation="Drop what this report lists as left behind; a migration that creates objects outside the schema "
    "it migrates (backup copies, helper schemas) must remove them itself.",
    drill=True,
)
def test_scratch_removed(target: UpgradeDrill, obs: UpgradeDrillRecord) -> None:
    """The scratch schema and directory are gone and the objects outside the source schema are as before."""
    before, after = set(obs.outside_before), set(obs.outside_after)
    appeared, vanished = sorted(after - before), sorted(before - after)
    c = obs.cleanup
    problems = [
        *(
            [f"scratch schema {obs.scratch.database}.{obs.scratch.schema} still exists"]
            if c["scratchSchemaExists"]
            else []
        ),
        *(
            [f"dropping it would cascade to {', '.join(c['dropBlockedBy'][:5])}"]
            if c["dropBlockedBy"]
            else []
        ),
        *([f"dropping it failed: {c['dropError']}"] if c["dropError"] else []),
        *([] if c["scratchDirRemoved"] else ["the scratch directory on the target was not removed"]),
        *([f"left behind: {', '.join(appeared[:5])}"] if appeared else []),
        *([f"gone since the drill started: {', '.join(vanished[:5])}"] if vanished else []),
    ]
    message = "; ".join(problems) or "no scratch object is left"
    expect(not problems, f"{obs.source}: {message}", reason="drill_left_scratch",
           observed={"message": message, "scratch": _scratch(obs), "scratchSchemaExists": c["scratchSchemaExists"],
                     "scratchDirRemoved": c["scratchDirRemoved"], "appeared": appeared, "vanished": vanished},
           expected={"scratchSchemaExists": False, "scratchDirRemoved": True, "appeared": [], "vanished": []})  # fmt: skip


@check(
    "upgrade.drill.source_unchanged",
    title="The production schema is as before the drill: same structure, version, rows and sequences",
    targets=_select.upgrade_drills,
    observe=drill,
    remediation="Something in the drill wrote to the production schema: usually a migrate command that takes the "
    "schema or database from the deployment's env file instead of the environment the drill gives it. Compare "
    "the before and after snapshots in this report.",
    drill=True,
)
def test_source_unchanged(target: UpgradeDrill, obs: UpgradeDrillRecord) -> None:
    """Before and after snapshots of the source are equal (rows of declared live tables may change, not their DDL)."""
    diffs = differences(obs.before, obs.after, live=obs.live_tables, rows_may_change=True)
    message = (
        f"the source changed in {len(diffs)} place(s): {'; '.join(diffs[:3])}"
        if diffs
        else "the source is unchanged"
    )
    expect(not diffs, f"{obs.source}: {message}", reason="drill_changed_source",
           observed={"message": message, "before": summary(obs.before), "after": summary(obs.after),
                     "liveTables": list(obs.live_tables), "differences": diffs},
           expected="after equals before (rows of the live tables excepted)")  # fmt: skip
