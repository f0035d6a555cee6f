"""Unit tests for the upgrade drill's pure parts: scratch planning, the dump rename, the manifest, comparisons.

The drill itself (pg_dump, psql, the migrate commands) is proven against the Nooterra reference in
tests/reference/test_nooterra_live.py; here are the decisions it takes from what it observed.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import shutil
import subprocess
from typing import Any

import pytest

from conformance import _schemas
from conformance.checks import load_suite
from conformance.errors import ConfigError, DrillRefused
from conformance.probes.pgdrill import (
    MANIFEST_SCHEMA_VERSION,
    PgUpgradeDrill,
    Scratch,
    backup_manifest,
    differences,
    manifest_problems,
    manifest_text,
    rename_program,
    scratch_target,
    version_advanced,
)
from conformance.profile import load_profile
from conformance.redact import Redactor
from gates import formats
from gates import report as reports
from gates.certify import _drill_declined
from gates.evaluate import evaluate
from gates.gate import expand, load_gate

SHA = "a" * 64
DRILL_IDS = [
    f"upgrade.drill.{c}"
    for c in ("backup_manifest", "restore_matches", "migration_advances", "rollback_restores", "scratch_removed",
              "source_unchanged")
]  # fmt: skip


class TestScratchTarget:
    """`scratch_target` picks the scratch copy's place and refuses anything that is not scratch."""

    def test_default_is_a_sibling_schema(self) -> None:
        """By default the copy is ``<schema>_gates_restore`` in the same database."""
        got = scratch_target(database="proxy", schema="nooterra", scratch_database="", scratch_schema="")
        assert got == Scratch(database="proxy", schema="nooterra_gates_restore")
        assert got.renames("nooterra")

    def test_scratch_database_keeps_the_name(self) -> None:
        """In a separate scratch database the copy keeps the schema's own name, so the dump is not rewritten."""
        got = scratch_target(database="proxy", schema="Nooterra", scratch_database="drill", scratch_schema="")
        assert got == Scratch(database="drill", schema="Nooterra")
        assert not got.renames("Nooterra")

    def test_default_name_fits_postgres(self) -> None:
        """A long schema name is cut so the scratch name stays within 63 bytes."""
        got = scratch_target(database="db", schema="s" * 60, scratch_database="", scratch_schema="")
        assert len(got.schema) == 63
        assert got.schema.startswith("s" * 60)

    @pytest.mark.parametrize(
        ("scratch_database", "scratch_schema", "match"),
        [
            ("", "nooterra", "is the production schema"),
            ("proxy", "nooterra", "is the production schema"),
            ("", "pg_catalog", "system schema"),
            ("", "information_schema", "system schema"),
            ("", "x" * 64, "longer than"),
            ("", "Scratch Copy", "plain lower-case"),
        ],
    )
    def test_refusals(self, scratch_database: str, scratch_schema: str, match: str) -> None:
        """Production, system schemas, overlong and non-plain renames are refused before anything is written."""
        with pytest.raises(DrillRefused, match=match) as info:
            scratch_target(
                database="proxy",
                schema="nooterra",
                scratch_database=scratch_database,
                scratch_schema=scratch_schema,
            )
        assert info.value.reason_code == "drill_refused"


DUMP = """\
--
-- Name: nooterra; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA nooterra;
COMMENT ON SCHEMA nooterra IS 'api';
CREATE TABLE nooterra.ledger_entries (
    entry_id bigint NOT NULL,
    reason text DEFAULT 'nooterra.x'::text NOT NULL
);
CREATE TABLE nooterra2.other (a int);
CREATE TABLE xnooterra.other (a int);
ALTER TABLE ONLY nooterra.ledger_entries ALTER COLUMN entry_id SET DEFAULT nextval('nooterra.seq'::regclass);
COPY nooterra.ledger_entries (entry_id, reason) FROM stdin;
1\tpaid to nooterra.x
2\tCREATE SCHEMA nooterra;
\\.
SELECT pg_catalog.setval('nooterra.seq', 2, true);
ALTER TABLE ONLY nooterra.x ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES nooterra.y(a);
"""


@pytest.mark.skipif(shutil.which("sed") is None, reason="needs sed")
class TestRenameProgram:
    """The sed program that moves a plain dump to the scratch schema (run on the target)."""

    def rename(self, text: str) -> str:
        """Run the program over ``text`` as the target does (``sed -E -e PROGRAM``)."""
        program = rename_program("nooterra", "nooterra_gates_restore")
        done = subprocess.run(
            ["sed", "-E", "-e", program], input=text, capture_output=True, text=True, check=True
        )
        return done.stdout

    def test_ddl_moves_data_stays(self) -> None:
        """Qualified names and SCHEMA statements move; COPY rows pass byte for byte; look-alikes stay."""
        out = self.rename(DUMP).splitlines()
        assert "CREATE SCHEMA nooterra_gates_restore;" in out
        assert "COMMENT ON SCHEMA nooterra_gates_restore IS 'api';" in out
        assert "CREATE TABLE nooterra_gates_restore.ledger_entries (" in out
        assert "    reason text DEFAULT 'nooterra_gates_restore.x'::text NOT NULL" in out
        assert "CREATE TABLE nooterra2.other (a int);" in out
        assert "CREATE TABLE xnooterra.other (a int);" in out
        assert "COPY nooterra_gates_restore.ledger_entries (entry_id, reason) FROM stdin;" in out
        assert "1\tpaid to nooterra.x" in out
        assert "2\tCREATE SCHEMA nooterra;" in out
        assert "SELECT pg_catalog.setval('nooterra_gates_restore.seq', 2, true);" in out
        assert out[-1].endswith("REFERENCES nooterra_gates_restore.y(a);")
        assert (
            "ALTER TABLE ONLY nooterra_gates_restore.ledger_entries ALTER COLUMN entry_id SET DEFAULT "
            "nextval('nooterra_gates_restore.seq'::regclass);"
        ) in out
        assert "-- Name: nooterra; Type: SCHEMA; Schema: -; Owner: -" in out  # comments are harmless

    def test_only_plain_names(self) -> None:
        """Names pg_dump would quote are not rewritten by pattern (the drill restores those elsewhere)."""
        with pytest.raises(ValueError, match="plain"):
            rename_program("Nooterra", "x")


class TestManifest:
    """`backup_manifest` writes the playbook's SelfHostUpgradeBackupManifest.v1; the schema guards it."""

    def manifest(self, **changes: Any) -> dict[str, Any]:
        """A valid manifest with ``changes`` applied."""
        body = backup_manifest(
            source_release="abc123", target_release="def456", artifacts=[("postgres/s.sql", SHA)]
        )
        body.update(changes)
        return body

    def test_shape_and_canonical_text(self) -> None:
        """The four fields, the artifacts as path/sha256 objects, written as key-sorted canonical JSON."""
        body = self.manifest()
        assert manifest_problems(body) == []
        assert manifest_text(body) == (
            '{"artifacts":[{"path":"postgres/s.sql","sha256":"' + SHA + '"}],'
            f'"schemaVersion":"{MANIFEST_SCHEMA_VERSION}","sourceRelease":"abc123","targetRelease":"def456"}}'
        )
        assert json.loads(manifest_text(body)) == body

    @pytest.mark.parametrize(
        ("changes", "match"),
        [
            ({"artifacts": [{"path": "/tmp/gates-upgrade-drill.x/s.sql", "sha256": SHA}]}, "does not match"),
            ({"artifacts": [{"path": "../s.sql", "sha256": SHA}]}, "does not match"),
            ({"artifacts": [{"path": "s.sql", "sha256": "ABC"}]}, "does not match"),
            ({"artifacts": []}, "should be non-empty"),
            ({"sourceRelease": ""}, "should be non-empty"),
            ({"schemaVersion": "SelfHostUpgradeBackupManifest.v2"}, "SelfHostUpgradeBackupManifest.v1"),
            ({"extra": 1}, "Additional properties"),
        ],
    )
    def test_problems(self, changes: dict[str, Any], match: str) -> None:
        """Absolute or escaping paths, bad digests, no artifacts, empty releases, other versions are found."""
        problems = manifest_problems(self.manifest(**changes))
        assert any(match in p for p in problems), problems


def snapshot(**changes: Any) -> dict[str, Any]:
    """A source snapshot: two tables (one written live), their sequences, version 1, three DDL objects."""
    base: dict[str, Any] = {
        "schema": "s",
        "version": {"table": "schema_migrations", "max": "1", "applied": 1},
        "tables": {"ledger": {"rows": 2, "sha256": "1" * 64}, "runs": {"rows": 5, "sha256": "2" * 64}},
        "sequences": {
            "ledger_id_seq": {"lastValue": 2, "isCalled": True, "table": "ledger"},
            "runs_id_seq": {"lastValue": 5, "isCalled": True, "table": "runs"},
        },
        "ddl": {"sha256": "x", "objects": {"table ledger": "a", "table runs": "b", "index ledger_pkey": "c"}},
    }
    for path, value in changes.items():
        node = base
        *parents, leaf = path.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return base


class TestDifferences:
    """`differences` compares snapshots: structure always, live rows and live sequences only where they may move."""

    def test_equal(self) -> None:
        """Identical snapshots have no difference."""
        assert differences(snapshot(), copy.deepcopy(snapshot())) == []

    def test_rows_and_version(self) -> None:
        """A lost row and an advanced version are reported, naming the table and both counts."""
        got = differences(snapshot(), snapshot(**{"tables.ledger.rows": 1, "version.max": "2"}))
        assert got == [
            "schema version: 1 (1 applied) -> 2 (1 applied)",
            f"table ledger: 2 rows (sha256 {'1' * 12}) -> 1 rows (sha256 {'1' * 12})",
        ]

    def test_live_tables(self) -> None:
        """Live rows count for a restore (same snapshot) but not before/after the drill; live sequences never."""
        moved = snapshot(**{"tables.runs.rows": 9, "sequences.runs_id_seq.lastValue": 9})
        assert differences(snapshot(), moved, live=("runs",)) == [
            f"table runs: 5 rows (sha256 {'2' * 12}) -> 9 rows (sha256 {'2' * 12})"
        ]
        assert differences(snapshot(), moved, live=("runs",), rows_may_change=True) == []
        assert differences(snapshot(), moved) == [
            f"table runs: 5 rows (sha256 {'2' * 12}) -> 9 rows (sha256 {'2' * 12})",
            "sequence runs_id_seq: last value 5 -> 9",
        ]

    def test_structure_of_live_tables_counts(self) -> None:
        """DDL objects missing, added or changed are reported even for live tables."""
        objects = {"table ledger": "a", "table runs": "changed", "index extra": "d"}
        got = differences(
            snapshot(), snapshot(**{"ddl.objects": objects}), live=("runs",), rows_may_change=True
        )
        assert got == [
            "index extra: not in the source",
            "index ledger_pkey: missing",
            "table runs: definition differs",
        ]

    def test_missing_migrations_table(self) -> None:
        """A copy without the migrations table says so."""
        assert (
            differences(snapshot(), snapshot(version=None))[0]
            == "schema version: 1 (1 applied) -> no migrations table"
        )


class TestVersionAdvanced:
    """`version_advanced` compares schema versions numerically when it can."""

    @pytest.mark.parametrize(
        ("before", "after", "advanced"),
        [
            ("1", "2", True),
            ("9", "10", True),
            ("2", "2", False),
            ("2", "1", False),
            ("20240101_init", "20240202_receipts", True),
            (None, "1", True),
            ("1", None, False),
        ],
    )
    def test_versions(self, before: str | None, after: str | None, advanced: bool) -> None:
        """Integers compare as numbers (9 < 10), other ids as text; no version after is never an advance."""
        assert version_advanced({"max": before}, {"max": after}) is advanced

    def test_no_table(self) -> None:
        """No migrations table after the migration is no advance."""
        assert version_advanced({"max": "1"}, None) is False


class TestCommandEnvironment:
    """What the migrate and rollback commands get: the scratch copy, never the password."""

    def test_points_at_the_copy_without_the_password(self) -> None:
        """Schema and URL variables name the copy; the password stays in the scratch directory's pgpass."""
        drill = PgUpgradeDrill(
            address="127.0.0.1", port=5432, database="proxy", user="proxy", password="s3cret-pass", schema="nooterra",
            scratch_database="", scratch_schema="", migrate="migrate", rollback="", migrations_table="schema_migrations",
            migrations_column="version", pg_bindir="", live_tables=(), source_release="a", target_release="b",
            schema_env="PROXY_PG_SCHEMA", url_env="DATABASE_URL", timeout_s=60,
        )  # fmt: skip
        env = dict(
            e.split("=", 1)
            for e in drill._command_env("/tmp/d", Scratch(database="proxy", schema="nooterra_gates_restore"))
        )
        assert env["PROXY_PG_SCHEMA"] == env["GATES_DRILL_SCHEMA"] == "nooterra_gates_restore"
        assert env["DATABASE_URL"] == "postgresql://proxy@127.0.0.1:5432/proxy"
        assert env["PGPASSFILE"] == "/tmp/d/.pgpass"
        assert env["PGOPTIONS"] == "-c search_path=nooterra_gates_restore"
        assert "s3cret-pass" not in json.dumps(env)
        assert "s3cret-pass" not in repr(drill)


class TestProfileAndGate:
    """The profile declares the drill through variables; the upgrade gate requires it only where declared."""

    def test_declared_only_with_a_migrate_command(self) -> None:
        """Without drill.migrate_command the upgrade gate has no drill instance and nothing unmatched."""
        gate = load_gate("self-host-upgrade-migration")
        bare = expand(gate, load_profile("nooterra", environ={}))
        assert not [i for i in bare.instances if i.drill]
        assert bare.unmatched == ()
        profile = load_profile("nooterra", {"drill.migrate_command": "bin/migrate"}, environ={})
        drills = [i for i in expand(gate, profile).instances if i.drill]
        assert sorted(i.id for i in drills) == [f"{c}[postgres]" for c in sorted(DRILL_IDS)]
        assert all(load_suite()[c].drill for c in DRILL_IDS)

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("drill.live_tables", "runs, bad name"),
            ("drill.migrations_table", "x;drop"),
            ("drill.timeout", "5"),
        ],
    )
    def test_bad_values(self, name: str, value: str) -> None:
        """Table names and bounds are checked when the profile loads, naming the place."""
        with pytest.raises(ConfigError, match="upgradeDrill"):
            load_profile("nooterra", {"drill.migrate_command": "m", name: value}, environ={})

    def test_upstream_rows_without_drills(self) -> None:
        """Declined drill checks are written failed (drill_not_allowed) under gates_drill_* ids; the gate is incomplete."""
        gate = load_gate("self-host-upgrade-migration")
        profile = load_profile("nooterra", {"drill.migrate_command": "m", "bundle.dir": "/srv/n"}, environ={})
        expansion = expand(gate, profile)
        results = {i.id: _drill_declined(i.id) for i in expansion.instances if i.drill}
        evaluation = evaluate(gate, expansion, results)
        assert evaluation.status == "incomplete"
        body = reports.build(gate, profile, evaluation, target="local", captured_at=None, redactor=Redactor(),
                             now=dt.datetime(2026, 3, 25, tzinfo=dt.UTC))  # fmt: skip
        ids = formats.get(gate.format).instance_ids()
        drill_rows = {ids[c["id"]]: c for c in body["checks"] if c["id"].startswith("gates_drill_")}
        assert sorted(drill_rows) == [f"{c}[postgres]" for c in sorted(DRILL_IDS)]
        assert {c["failureCode"] for c in drill_rows.values()} == {"drill_not_allowed"}
        assert _schemas.errors(body, formats.get(gate.format).schema) == []
