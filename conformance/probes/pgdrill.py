"""The upgrade drill: back up a PostgreSQL schema, restore it into a scratch copy, migrate the copy, roll it back.

The self-host upgrade playbook (backup, apply upgrade, rollback from the backup manifest), rehearsed on a
scratch copy so that the production schema is only ever read. One run of `PgUpgradeDrill`:

1. plans the scratch target and refuses (`DrillRefused`, nothing changed) when it is the production schema,
   a system schema, or an existing schema the drill did not create (the drill marks its copies with a
   comment, so a copy an interrupted drill left behind is recognised and dropped);
2. snapshots the source schema -- per table the row count and the sha256 of its rows (``to_jsonb`` text,
   sorted bytewise), the sequences, the schema version, and a digest per DDL object -- inside one
   REPEATABLE READ transaction whose snapshot it hands to ``pg_dump --snapshot``, so that the snapshot and
   the backup show the same instant while the deployment keeps writing;
3. backs up with ``pg_dump --schema --no-owner --no-privileges`` into a ``mktemp -d`` directory on the
   target, hashes the artifact there, and writes the ``SelfHostUpgradeBackupManifest.v1`` with the path
   relative to that directory;
4. restores it into the scratch schema with ``psql`` in one transaction (the schema is renamed in the
   dump's DDL, never in its data) and snapshots the copy;
5. runs the target release's migrate command against the copy and reads its schema version;
6. rollback path: drops the copy, checks the artifact's sha256 against the manifest, restores again, runs
   the source release's rollback (start-up) command, and snapshots the copy;
7. drops the scratch schema (refusing if that would cascade to anything outside it) and the directory,
   lists what exists outside the source schema, and snapshots the source again.

The database password reaches the target once, as the argument of a short-lived shell that writes it to a
0600 pgpass file in the scratch directory; pg_dump, psql and the commands read it from there (PGPASSFILE),
and it goes with the directory. Nothing of it is recorded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
import urllib.parse
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from conformance import _schemas
from conformance.canonical import canonical_hash, canonical_json
from conformance.errors import DrillRefused, ProbeError, ProbeTimeout, ProbeUnreachable
from conformance.probes.base import Context
from conformance.probes.pgsession import conninfo

MANIFEST_SCHEMA_VERSION = "SelfHostUpgradeBackupManifest.v1"
MANIFEST_SCHEMA = "self-host-upgrade-backup-manifest"
SCRATCH_SUFFIX = "_gates_restore"
SCRATCH_MARK = "gates upgrade drill scratch copy"
MAX_IDENTIFIER_BYTES = 63
TAIL_BYTES = 2000
_PLAIN = re.compile(r"^[a-z_][a-z0-9_]*$")
_SYSTEM_SCHEMA = re.compile(r"^(pg_.*|information_schema)$")
_NOT_SYSTEM = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'"

_SETUP = r"""pgpass="$1"
umask 077
d=$(mktemp -d "${TMPDIR:-/tmp}/gates-upgrade-drill.XXXXXX") || exit 97
mkdir -p -- "$d/postgres" || { rm -rf -- "$d"; exit 97; }
if [ -n "$pgpass" ]; then printf '%s\n' "$pgpass" >"$d/.pgpass" || { rm -rf -- "$d"; exit 97; }; fi
echo "dir=$d"
"""

_BACKUP = r"""d="$1"; dump="$2"; file="$3"; limit="$4"; shift 4
if "$dump" --help 2>/dev/null | grep -q -- '--restrict-key'; then :; else
  # a pg_dump without \restrict support: drop the key argument (the last one) it would refuse
  set -- "${@:1:$(($#-1))}"
fi
PGPASSFILE="$d/.pgpass" timeout "$limit" "$dump" "$@" -f "$d/$file" >/dev/null 2>"$d/backup.err"
echo "rc=$?"
if [ -f "$d/$file" ]; then
  echo "bytes=$(wc -c <"$d/$file" | tr -d ' ')"
  echo "sha256=$(sha256sum -- "$d/$file" | cut -d' ' -f1)"
  if tail -c 1024 -- "$d/$file" | grep -q -- '-- PostgreSQL database dump complete'; then echo "complete=1"; fi
fi
echo "stderr=$(tail -c 2000 -- "$d/backup.err" | base64 -w0)"
"""

_RESTORE = r"""d="$1"; psql="$2"; file="$3"; expect="$4"; program="$5"; trailer="$6"; limit="$7"; shift 7
actual=$(sha256sum -- "$d/$file" 2>/dev/null | cut -d' ' -f1)
echo "sha256=$actual"
if [ -n "$expect" ] && [ "$actual" != "$expect" ]; then echo "rc=98"; echo "stderr="; exit 0; fi
{ if [ -n "$program" ]; then sed -E -e "$program" "$d/$file"; else cat -- "$d/$file"; fi
  printf '%s\n' "$trailer"; } \
  | PGPASSFILE="$d/.pgpass" timeout "$limit" "$psql" -X -q -v ON_ERROR_STOP=1 --single-transaction "$@" -f - \
      >/dev/null 2>"$d/restore.err"
echo "rc=$?"
echo "stderr=$(tail -c 2000 -- "$d/restore.err" | base64 -w0)"
"""

_RUN = r"""d="$1"; limit="$2"; cmd="$3"; shift 3
( cd -- "$d" && exec env "$@" timeout "$limit" bash -c "$cmd" ) >"$d/command.out" 2>"$d/command.err" </dev/null
echo "rc=$?"
echo "stdout=$(tail -c 2000 -- "$d/command.out" | base64 -w0)"
echo "stderr=$(tail -c 2000 -- "$d/command.err" | base64 -w0)"
"""

_REMOVE = r"""d="$1"
case "$d" in */gates-upgrade-drill.*) rm -rf -- "$d" ;; esac
if [ -e "$d" ]; then echo "left=1"; else echo "left=0"; fi
"""


# --- pure parts: scratch planning, dump rename, manifest, comparison ----------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Scratch:
    """Where the drill restores its copy: a database of the same server and a schema in it."""

    database: str
    schema: str

    def renames(self, source_schema: str) -> bool:
        """Whether the dump's schema name must be rewritten to restore it here."""
        return self.schema != source_schema


def scratch_target(*, database: str, schema: str, scratch_database: str, scratch_schema: str) -> Scratch:
    """The scratch target the profile asks for, or `DrillRefused` when it is not a scratch target.

    Default: ``<schema>_gates_restore`` in the same database, or ``<schema>`` in another (scratch) database.
    """
    target_db = scratch_database or database
    same_db = target_db == database
    name = scratch_schema or (_truncate(schema + SCRATCH_SUFFIX) if same_db else schema)
    if same_db and name == schema:
        raise DrillRefused(
            f"the scratch schema {database}.{name} is the production schema: the drill restores into its "
            "scratch target and drops it. Set drill.scratch_schema to another schema, or drill.scratch_database "
            "to a scratch database on the same server"
        )
    if _SYSTEM_SCHEMA.match(name):
        raise DrillRefused(
            f"the scratch schema {name!r} is a system schema; choose another drill.scratch_schema"
        )
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise DrillRefused(f"the scratch schema name {name!r} is longer than PostgreSQL's 63 bytes")
    if name != schema and not (_PLAIN.match(schema) and _PLAIN.match(name)):
        raise DrillRefused(
            f"restoring {schema!r} as {name!r} rewrites the schema name in the dump, which the drill does only for "
            "plain lower-case names; restore into a scratch database instead (drill.scratch_database), where "
            "the copy keeps its name"
        )
    return Scratch(database=target_db, schema=name)


def _truncate(name: str) -> str:
    raw = name.encode()[:MAX_IDENTIFIER_BYTES]
    return raw.decode("utf-8", "ignore")


def rename_program(source: str, scratch: str) -> str:
    """A ``sed -E`` program moving a plain-format pg_dump from schema ``source`` to ``scratch``.

    Qualified names (``source.x``, also inside quoted regclass literals such as ``nextval('source.seq')``)
    and ``SCHEMA source`` are rewritten everywhere except in COPY data blocks, which pass through byte
    for byte. Both names must be plain lower-case identifiers (pg_dump writes those unquoted).
    """
    if not (_PLAIN.match(source) and _PLAIN.match(scratch)):
        raise ValueError(f"not plain identifiers: {source!r}, {scratch!r}")
    return "\n".join(
        [
            r"/^COPY [^ ]+ .*FROM stdin;$/,/^\\\.$/{",
            "/^COPY /!b",
            "}",
            rf"s/(^|[^A-Za-z0-9_$\".]){source}\./\1{scratch}./g",
            rf"s/(^|[^A-Za-z0-9_])SCHEMA {source}([ ;]|$)/\1SCHEMA {scratch}\2/g",
        ]
    )


def backup_manifest(
    *, source_release: str, target_release: str, artifacts: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """The playbook's ``SelfHostUpgradeBackupManifest.v1`` for ``artifacts`` (relative path, sha256)."""
    return {
        "schemaVersion": MANIFEST_SCHEMA_VERSION,
        "sourceRelease": source_release,
        "targetRelease": target_release,
        "artifacts": [{"path": path, "sha256": digest} for path, digest in artifacts],
    }


def manifest_problems(manifest: Mapping[str, Any]) -> list[str]:
    """What is wrong with a manifest against its JSON Schema.

    Source and target may be one release: the playbook asks only that both be recorded
    (SELF_HOST_UPGRADE_MIGRATION_PLAYBOOK.md Step 1.4), and re-applying the running release is a
    rehearsal with nothing to migrate.
    """
    return [
        f"{_schemas.pointer(e.absolute_path)}: {e.message}"
        for e in _schemas.errors(manifest, MANIFEST_SCHEMA)
    ]


def manifest_text(manifest: Mapping[str, Any]) -> str:
    """backup-manifest.json as the playbook writes it: canonical JSON."""
    return canonical_json(dict(manifest))


def differences(
    expected: Mapping[str, Any],
    actual: Mapping[str, Any],
    *,
    live: Collection[str] = (),
    rows_may_change: bool = False,
) -> list[str]:
    """How snapshot ``actual`` differs from ``expected``, one line per difference, in a stable order.

    Sequences owned by a ``live`` table are not compared (sequences are not transactional, so no snapshot
    pins them); with ``rows_may_change`` neither are the rows of ``live`` tables (the deployment writes
    them while the drill runs). Structure is always compared.
    """
    out: list[str] = []
    want_v, got_v = _version_text(expected.get("version")), _version_text(actual.get("version"))
    if want_v != got_v:
        out.append(f"schema version: {want_v} -> {got_v}")
    want_ddl = expected.get("ddl", {}).get("objects", {})
    got_ddl = actual.get("ddl", {}).get("objects", {})
    for name in sorted(set(want_ddl) | set(got_ddl)):
        if name not in got_ddl:
            out.append(f"{name}: missing")
        elif name not in want_ddl:
            out.append(f"{name}: not in the source")
        elif want_ddl[name] != got_ddl[name]:
            out.append(f"{name}: definition differs")
    want_t, got_t = expected.get("tables", {}), actual.get("tables", {})
    for name in sorted(set(want_t) & set(got_t)):
        if rows_may_change and name in live:
            continue
        a, b = want_t[name], got_t[name]
        if (a["rows"], a["sha256"]) != (b["rows"], b["sha256"]):
            out.append(
                f"table {name}: {a['rows']} rows (sha256 {a['sha256'][:12]}) -> {b['rows']} rows (sha256 {b['sha256'][:12]})"
            )
    want_s, got_s = expected.get("sequences", {}), actual.get("sequences", {})
    for name in sorted(set(want_s) & set(got_s)):
        a, b = want_s[name], got_s[name]
        if a.get("table") in live or b.get("table") in live:
            continue
        if (a["lastValue"], a["isCalled"]) != (b["lastValue"], b["isCalled"]):
            out.append(f"sequence {name}: last value {a['lastValue']} -> {b['lastValue']}")
    return out


def version_advanced(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> bool:
    """Whether the schema version moved forward (numerically when both are integers, else as text, or, with
    the same latest migration, by more migrations applied)."""
    old = before.get("max") if before else None
    new = after.get("max") if after else None
    if new is None:
        return False
    if old is None:
        return True
    if re.fullmatch(r"-?\d+", old) and re.fullmatch(r"-?\d+", new):
        return int(new) > int(old)
    if (
        new == old
    ):  # upstream names migrations by file: one may sort below the newest (src/db/migrate.js:33-36)
        return int(after.get("applied") or 0) > int(before.get("applied") or 0) if before and after else False
    return bool(new > old)


def _version_text(version: Mapping[str, Any] | None) -> str:
    if version is None:
        return "no migrations table"
    return f"{version.get('max')} ({version.get('applied')} applied)"


def summary(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """What a report shows of a snapshot: version, DDL digest and object count, tables, sequences."""
    ddl = snapshot.get("ddl", {})
    return {
        "schema": snapshot.get("schema"),
        "version": snapshot.get("version"),
        "ddl": {"sha256": ddl.get("sha256"), "objects": len(ddl.get("objects", {}))},
        "tables": snapshot.get("tables", {}),
        "sequences": {
            k: {"lastValue": v["lastValue"], "isCalled": v["isCalled"]}
            for k, v in snapshot.get("sequences", {}).items()
        },
    }


# --- the drill --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class UpgradeDrillRecord:
    """Everything the upgrade drill did and saw, as plain data for the checks and the report."""

    source: str  # database.schema
    scratch: Scratch
    before: dict[str, Any]
    after: dict[str, Any]
    backup: dict[str, Any]
    manifest: dict[str, Any] | None
    restore: dict[str, Any] | None
    migration: dict[str, Any] | None
    rollback: dict[str, Any] | None
    cleanup: dict[str, Any]
    outside_before: tuple[str, ...]
    outside_after: tuple[str, ...]
    live_tables: tuple[str, ...]
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PgUpgradeDrill:
    """Run the upgrade drill a profile's ``upgradeDrill`` describes (see the module docstring)."""

    address: str
    port: int
    database: str
    user: str
    password: str | None = field(default=None, repr=False)
    schema: str
    scratch_database: str
    scratch_schema: str
    migrate: str
    rollback: str
    migrations_table: str
    migrations_column: str
    pg_bindir: str
    live_tables: tuple[str, ...]
    source_release: str
    target_release: str
    schema_env: str
    url_env: str
    timeout_s: int

    def observe(self, ctx: Context) -> UpgradeDrillRecord:
        """Plan, snapshot, back up, restore, migrate, roll back, clean up, snapshot again."""
        started = time.monotonic()
        if not self.migrate:
            raise ProbeError("the profile declares no migrate command (drill.migrate_command)")
        scratch = scratch_target(
            database=self.database,
            schema=self.schema,
            scratch_database=self.scratch_database,
            scratch_schema=self.scratch_schema,
        )
        main = self._connect(ctx, self.database)
        other: psycopg.Connection[Any] | None = None
        try:
            if scratch.database != self.database:
                other = self._connect(ctx, scratch.database)
            copy_db = other or main
            self._preflight(main, copy_db, scratch)
            outside_before = self._outside(main, other, scratch)
            workdir = self._setup(ctx)
            restore = migration = rollback = None
            manifest: dict[str, Any] | None = None
            try:
                with _db(f"{self.database}.{self.schema}"), main.transaction():
                    main.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    row = main.execute("SELECT pg_export_snapshot()").fetchone()
                    assert row is not None
                    before = _snapshot(main, self.schema, self.migrations_table, self.migrations_column)
                    backup = self._backup(ctx, workdir, str(row[0]), restrict_key=_restrict_key(before))
                if backup["exitCode"] == 0 and backup.get("sha256"):
                    manifest = backup_manifest(
                        source_release=self.source_release,
                        target_release=self.target_release,
                        artifacts=[(backup["artifact"], backup["sha256"])],
                    )
                    restore = self._restore_copy(
                        ctx, workdir, copy_db, scratch, expect_sha256=backup["sha256"]
                    )
                    if restore["exitCode"] == 0:
                        migration = self._run(ctx, workdir, self.migrate, scratch)
                        migration["snapshot"] = self._copy_snapshot(copy_db, scratch)
                    rollback = self._restore_copy(
                        ctx, workdir, copy_db, scratch, expect_sha256=backup["sha256"]
                    )
                    if rollback["exitCode"] == 0 and self.rollback:
                        rollback["command"] = self._run(ctx, workdir, self.rollback, scratch)
                    if rollback["exitCode"] == 0:
                        rollback["snapshot"] = self._copy_snapshot(copy_db, scratch)
            finally:
                cleanup = self._cleanup(ctx, workdir, main, copy_db, scratch)
            with _db(f"{self.database}.{self.schema}"), main.transaction():
                main.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                after = _snapshot(main, self.schema, self.migrations_table, self.migrations_column)
            outside_after = self._outside(main, other, scratch)
        finally:
            main.close()
            if other is not None:
                other.close()
        return UpgradeDrillRecord(
            source=f"{self.database}.{self.schema}",
            scratch=scratch,
            before=before,
            after=after,
            backup=backup,
            manifest=manifest,
            restore=restore,
            migration=migration,
            rollback=rollback,
            cleanup=cleanup,
            outside_before=outside_before,
            outside_after=outside_after,
            live_tables=self.live_tables,
            seconds=round(time.monotonic() - started, 3),
        )

    # --- database side ------------------------------------------------------------------------

    def _connect(self, ctx: Context, dbname: str) -> psycopg.Connection[Any]:
        address, port = ctx.dial(self.address, self.port)
        info = conninfo(address, port, dbname, self.user, self.password, ctx.settings.connect_timeout_s)
        with _db(f"{dbname} at {self.address}:{self.port}"):
            conn = psycopg.connect(info, autocommit=True)
            # Row text must not depend on the session: one time zone, one float and bytea format.
            for setting, value in (("TimeZone", "UTC"), ("extra_float_digits", "1"), ("bytea_output", "hex"),
                                   ("IntervalStyle", "postgres"), ("statement_timeout", str(self.timeout_s * 1000)),
                                   ("lock_timeout", "10000")):  # fmt: skip
                conn.execute("SELECT set_config(%s, %s, false)", (setting, value))
            return conn

    def _preflight(
        self, main: psycopg.Connection[Any], copy_db: psycopg.Connection[Any], scratch: Scratch
    ) -> None:
        with _db(f"{self.database}.{self.schema}"):
            if (
                main.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)).fetchone()
                is None
            ):
                raise ProbeError(f"schema {self.schema!r} does not exist in database {self.database!r}")
            if scratch.renames(self.schema):
                row = main.execute("SELECT quote_ident(%s) = %s, quote_ident(%s) = %s",
                                   (self.schema, self.schema, scratch.schema, scratch.schema)).fetchone()  # fmt: skip
                if row is None or not (row[0] and row[1]):
                    raise DrillRefused(
                        f"{self.schema!r} or {scratch.schema!r} is a reserved word that pg_dump quotes; restore into "
                        "a scratch database instead (drill.scratch_database)"
                    )
        with _db(f"{scratch.database}.{scratch.schema}"):
            row = copy_db.execute(
                "SELECT coalesce(obj_description(oid, 'pg_namespace'), '') FROM pg_namespace WHERE nspname = %s",
                (scratch.schema,),
            ).fetchone()
        if row is not None and not str(row[0]).startswith(SCRATCH_MARK):
            raise DrillRefused(
                f"the scratch schema {scratch.database}.{scratch.schema} already exists and is not a copy this drill "
                "made: the drill drops its scratch schema, so it will not touch one it did not create. Drop it "
                "yourself or choose another drill.scratch_schema"
            )
        if row is not None:  # the copy an interrupted drill left behind
            dropped = _drop_schema(copy_db, scratch.schema)
            if dropped["blockedBy"] or dropped["error"]:
                raise ProbeError(
                    f"cannot drop the scratch copy {scratch.schema} an earlier drill left: "
                    f"{dropped['error'] or 'it would cascade to ' + ', '.join(dropped['blockedBy'][:5])}"
                )

    def _outside(
        self, main: psycopg.Connection[Any], other: psycopg.Connection[Any] | None, scratch: Scratch
    ) -> tuple[str, ...]:
        with _db(self.database):
            found = {f"{self.database}: {o}" for o in _objects(main, exclude=(self.schema,))}
        if other is not None:
            with _db(scratch.database):
                found |= {f"{scratch.database}: {o}" for o in _objects(other, exclude=())}
        return tuple(sorted(found))

    def _copy_snapshot(self, conn: psycopg.Connection[Any], scratch: Scratch) -> dict[str, Any]:
        with _db(f"{scratch.database}.{scratch.schema}"), conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return _snapshot(conn, scratch.schema, self.migrations_table, self.migrations_column)

    # --- target side --------------------------------------------------------------------------

    def _tool(self, name: str) -> str:
        return f"{self.pg_bindir}/{name}" if self.pg_bindir else name

    def _connection_args(self, dbname: str) -> list[str]:
        return ["-h", self.address, "-p", str(self.port), "-U", self.user, "-d", dbname]

    def _setup(self, ctx: Context) -> str:
        pgpass = f"*:*:*:{_pgpass_field(self.user)}:{_pgpass_field(self.password)}" if self.password else ""
        result = ctx.host.run("bash -c %s gates-drill-setup %s", _SETUP, pgpass)
        fields = _fields(result.stdout)
        if result.rc != 0 or not fields.get("dir"):
            raise ProbeError(f"cannot create a scratch directory on the target (exit {result.rc})")
        return fields["dir"]

    def _backup(self, ctx: Context, workdir: str, snapshot_id: str, *, restrict_key: str) -> dict[str, Any]:
        artifact = f"postgres/{self.schema}.sql"
        args = [f'--schema="{self.schema.replace(chr(34), chr(34) * 2)}"', "--no-owner", "--no-privileges",
                f"--snapshot={snapshot_id}", *self._connection_args(self.database), f"--restrict-key={restrict_key}"]  # fmt: skip
        result = ctx.host.run(
            "bash -c %s gates-drill-backup %s %s %s %s " + " ".join(["%s"] * len(args)),
            _BACKUP, workdir, self._tool("pg_dump"), artifact, str(self.timeout_s), *args,
        )  # fmt: skip
        fields = _fields(result.stdout)
        if "rc" not in fields:
            raise ProbeError(
                f"the backup step did not run on the target: {result.stderr.strip()[:300] or result.rc}"
            )
        return {
            "artifact": artifact,
            "command": f"{self._tool('pg_dump')} --schema={self.schema} --no-owner --no-privileges",
            "exitCode": int(fields["rc"]),
            "bytes": int(fields.get("bytes", "0") or 0),
            "sha256": fields.get("sha256", ""),
            "complete": fields.get("complete") == "1",
            "stderrTail": _b64(fields.get("stderr", "")),
        }

    def _restore_copy(
        self,
        ctx: Context,
        workdir: str,
        conn: psycopg.Connection[Any],
        scratch: Scratch,
        *,
        expect_sha256: str,
    ) -> dict[str, Any]:
        dropped = _drop_schema(conn, scratch.schema)
        if dropped["blockedBy"] or dropped["error"]:
            return {"exitCode": 99, "stderrTail": f"cannot drop the previous copy: {dropped['error'] or dropped['blockedBy']}",
                    "artifactSha256": ""}  # fmt: skip
        program = rename_program(self.schema, scratch.schema) if scratch.renames(self.schema) else ""
        marker = f"{SCRATCH_MARK}: restored from {self.database}.{self.schema}; safe to drop"
        trailer = sql.SQL("COMMENT ON SCHEMA {} IS {};").format(
            sql.Identifier(scratch.schema), sql.Literal(marker)
        )
        args = self._connection_args(scratch.database)
        result = ctx.host.run(
            "bash -c %s gates-drill-restore %s %s %s %s %s %s %s " + " ".join(["%s"] * len(args)),
            _RESTORE, workdir, self._tool("psql"), f"postgres/{self.schema}.sql", expect_sha256, program,
            trailer.as_string(conn), str(self.timeout_s), *args,
        )  # fmt: skip
        fields = _fields(result.stdout)
        if "rc" not in fields:
            raise ProbeError(
                f"the restore step did not run on the target: {result.stderr.strip()[:300] or result.rc}"
            )
        return {
            "exitCode": int(fields["rc"]),
            "artifactSha256": fields.get("sha256", ""),
            "stderrTail": _b64(fields.get("stderr", "")),
            "snapshot": self._copy_snapshot(conn, scratch) if fields["rc"] == "0" else None,
        }

    def _run(self, ctx: Context, workdir: str, command: str, scratch: Scratch) -> dict[str, Any]:
        env = self._command_env(workdir, scratch)
        started = time.monotonic()
        result = ctx.host.run(
            "bash -c %s gates-drill-run %s %s %s " + " ".join(["%s"] * len(env)),
            _RUN, workdir, str(self.timeout_s), command, *env,
        )  # fmt: skip
        fields = _fields(result.stdout)
        if "rc" not in fields:
            raise ProbeError(
                f"could not run {command!r} on the target: {result.stderr.strip()[:300] or result.rc}"
            )
        code = int(fields["rc"])
        return {
            "command": command,
            "exitCode": code,
            "timedOut": code in (124, 137),
            "seconds": round(time.monotonic() - started, 3),
            "stdoutTail": _b64(fields.get("stdout", "")),
            "stderrTail": _b64(fields.get("stderr", "")),
        }

    def _command_env(self, workdir: str, scratch: Scratch) -> list[str]:
        """The environment that points a migrate or rollback command at the scratch copy (no password)."""
        env = {
            "PGHOST": self.address,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGDATABASE": scratch.database,
            "PGPASSFILE": f"{workdir}/.pgpass",
            "GATES_DRILL_DATABASE": scratch.database,
            "GATES_DRILL_SCHEMA": scratch.schema,
        }
        if _PLAIN.match(scratch.schema):
            env["PGOPTIONS"] = f"-c search_path={scratch.schema}"
        if self.schema_env:
            env[self.schema_env] = scratch.schema
        if self.url_env:
            host = f"[{self.address}]" if ":" in self.address else self.address
            env[self.url_env] = (
                f"postgresql://{urllib.parse.quote(self.user, safe='')}@{host}:{self.port}/"
                f"{urllib.parse.quote(scratch.database, safe='')}"
            )
        return [f"{k}={v}" for k, v in env.items()]

    def _cleanup(
        self,
        ctx: Context,
        workdir: str,
        main: psycopg.Connection[Any],
        copy_db: psycopg.Connection[Any],
        scratch: Scratch,
    ) -> dict[str, Any]:
        """Drop the copy and the directory; record rather than raise, so the final snapshots still happen."""
        try:
            dropped = _drop_schema(copy_db, scratch.schema)
        except ProbeError as exc:
            dropped = {"dropped": False, "blockedBy": [], "error": str(exc)}
        try:
            removed = (
                _fields(ctx.host.run("bash -c %s gates-drill-remove %s", _REMOVE, workdir).stdout).get("left")
                == "0"
            )
        except Exception as exc:  # the target went away: report the directory as left behind
            removed, dropped["error"] = (
                False,
                dropped["error"] or f"cannot remove the scratch directory: {exc}",
            )
        with _db(f"{scratch.database}.{scratch.schema}"):
            exists = copy_db.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (scratch.schema,)
            ).fetchone()
        return {
            "scratchDropped": bool(dropped["dropped"]),
            "dropBlockedBy": dropped["blockedBy"],
            "dropError": dropped["error"],
            "scratchSchemaExists": exists is not None,
            "scratchDirRemoved": removed,
        }


# --- SQL ----------------------------------------------------------------------------------------


@contextmanager
def _db(where: str) -> Iterator[None]:
    """psycopg errors become probe errors naming the database."""
    try:
        yield
    except psycopg.errors.QueryCanceled as exc:
        raise ProbeTimeout(f"postgres {where}: {_first_line(exc)}") from exc
    except psycopg.OperationalError as exc:
        raise ProbeUnreachable(f"postgres {where}: {_first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise ProbeError(f"postgres {where}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_RELKIND = {"r": "table", "p": "table", "v": "view", "m": "materialized view", "S": "sequence", "i": "index",
            "I": "index", "c": "type", "f": "foreign table"}  # fmt: skip


def _objects(conn: psycopg.Connection[Any], *, exclude: Sequence[str]) -> list[str]:
    """Schemas, relations and functions outside the system schemas and ``exclude``."""
    rows = conn.execute(
        f"""
        SELECT 'schema ' || n.nspname FROM pg_namespace n WHERE {_NOT_SYSTEM} AND n.nspname <> ALL(%(x)s)
        UNION ALL
        SELECT c.relkind::text || ' ' || n.nspname || '.' || c.relname FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_NOT_SYSTEM} AND n.nspname <> ALL(%(x)s)
        UNION ALL
        SELECT 'function ' || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {_NOT_SYSTEM} AND n.nspname <> ALL(%(x)s)
        """,
        {"x": list(exclude)},
    ).fetchall()
    out = []
    for (text,) in rows:
        kind, _, rest = str(text).partition(" ")
        out.append(f"{_RELKIND.get(kind, kind)} {rest}")
    return sorted(out)


def _drop_schema(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    """Drop ``schema`` with everything in it, unless that would cascade to objects outside it."""
    try:
        with conn.transaction():
            if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
                return {"dropped": False, "blockedBy": [], "error": None}
            before = set(_objects(conn, exclude=(schema,)))
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
            gone = sorted(before - set(_objects(conn, exclude=(schema,))))
            if gone:
                raise _Cascade(gone)
    except _Cascade as blocked:
        return {"dropped": False, "blockedBy": blocked.objects, "error": None}
    except psycopg.Error as exc:
        return {"dropped": False, "blockedBy": [], "error": _first_line(exc)}
    return {"dropped": True, "blockedBy": [], "error": None}


class _Cascade(Exception):
    """Dropping the scratch schema would drop objects outside it (the transaction rolls back)."""

    def __init__(self, objects: list[str]) -> None:
        super().__init__(objects)
        self.objects = objects


def _snapshot(conn: psycopg.Connection[Any], schema: str, table: str, column: str) -> dict[str, Any]:
    """Row counts and digests, sequences, schema version and DDL digests of ``schema`` (inside a transaction)."""
    conn.execute("SELECT set_config('search_path', quote_ident(%s), true)", (schema,))
    row = conn.execute("SELECT quote_ident(%s)", (schema,)).fetchone()
    qualified = re.compile(r'(?<![A-Za-z0-9_$"])' + re.escape(str(row[0] if row else schema)) + r"\.")

    def plain(text: Any) -> str:
        return qualified.sub("", "" if text is None else str(text))

    tables: dict[str, Any] = {}
    names = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY c.relname COLLATE \"C\"",
        (schema,),
    ).fetchall()
    for (name,) in names:
        digest, count = hashlib.sha256(), 0
        query = sql.SQL(
            'SELECT r FROM (SELECT to_jsonb(t)::text AS r FROM {}.{} AS t) AS x ORDER BY r COLLATE "C"'
        ).format(sql.Identifier(schema), sql.Identifier(name))
        with conn.cursor(name=f"gates_drill_rows_{len(tables)}") as cur:
            cur.itersize = 2000
            cur.execute(query)
            for (text,) in cur:
                digest.update(str(text).encode())
                digest.update(b"\n")
                count += 1
        tables[str(name)] = {"rows": count, "sha256": digest.hexdigest()}

    sequences: dict[str, Any] = {}
    for name, owner in conn.execute(
        "SELECT s.relname, t.relname FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace "
        "LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid "
        "  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') "
        "LEFT JOIN pg_class t ON t.oid = d.refobjid "
        "WHERE n.nspname = %s AND s.relkind = 'S' ORDER BY s.relname COLLATE \"C\"",
        (schema,),
    ).fetchall():
        value = conn.execute(
            sql.SQL("SELECT last_value, is_called FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(name)
            )
        ).fetchone()
        assert value is not None
        sequences[str(name)] = {"lastValue": int(value[0]), "isCalled": bool(value[1]), "table": owner}

    version = None
    exists = conn.execute(
        "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))", (schema, table)
    ).fetchone()
    if exists is not None and exists[0] is not None:
        found = conn.execute(
            sql.SQL("SELECT max({c})::text, count(*) FROM {s}.{t}").format(
                c=sql.Identifier(column), s=sql.Identifier(schema), t=sql.Identifier(table)
            )
        ).fetchone()
        assert found is not None
        version = {"table": table, "max": found[0], "applied": int(found[1])}

    objects: dict[str, list[str]] = {}

    def add(key: str, *parts: Any) -> None:
        objects.setdefault(key, []).append("\t".join(plain(p) for p in parts))

    not_extension = "NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid = {}.oid AND e.deptype = 'e')"
    for rel, kind, persistence, col, typ, notnull, default, identity, generated in conn.execute(
        "SELECT c.relname, c.relkind, c.relpersistence, a.attname, format_type(a.atttypid, a.atttypmod), "
        "a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum "
        f"WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'c', 'f') AND {not_extension.format('c')} "
        'ORDER BY c.relname COLLATE "C", a.attnum',
        (schema,),
    ).fetchall():
        add(f"{_RELKIND.get(kind, kind)} {rel}", persistence, col, typ, notnull, default, identity, generated)
    for rel, kind, con, definition in conn.execute(
        "SELECT c.relname, c.relkind, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k "
        "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        'WHERE n.nspname = %s ORDER BY c.relname COLLATE "C", k.conname COLLATE "C"',
        (schema,),
    ).fetchall():
        add(f"{_RELKIND.get(kind, kind)} {rel}", "constraint", con, definition)
    for rel, kind, trigger, definition in conn.execute(
        "SELECT c.relname, c.relkind, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        'WHERE n.nspname = %s AND NOT t.tgisinternal ORDER BY c.relname COLLATE "C", t.tgname COLLATE "C"',
        (schema,),
    ).fetchall():
        add(f"{_RELKIND.get(kind, kind)} {rel}", "trigger", trigger, definition)
    for name, definition in conn.execute(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        'JOIN pg_namespace n ON n.oid = i.relnamespace WHERE n.nspname = %s ORDER BY i.relname COLLATE "C"',
        (schema,),
    ).fetchall():
        add(f"index {name}", definition)
    for name, typ, start, inc, low, high, cycle, owner in conn.execute(
        "SELECT c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, "
        "s.seqcycle, t.relname FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid "
        "  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') "
        "LEFT JOIN pg_class t ON t.oid = d.refobjid "
        'WHERE n.nspname = %s ORDER BY c.relname COLLATE "C"',
        (schema,),
    ).fetchall():
        add(f"sequence {name}", typ, start, inc, low, high, cycle, owner)
    for name, definition in conn.execute(
        "SELECT c.relname, pg_get_viewdef(c.oid, true) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('v', 'm') ORDER BY c.relname COLLATE \"C\"",
        (schema,),
    ).fetchall():
        add(f"view {name}", definition)
    for name, args, definition in conn.execute(
        "SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid) FROM pg_proc p "
        f"JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s AND p.prokind IN ('f', 'p') "
        f'AND {not_extension.format("p")} ORDER BY p.proname COLLATE "C", 2',
        (schema,),
    ).fetchall():
        add(f"function {name}({plain(args)})", definition)
    for name, kind, base, notnull, labels, checks in conn.execute(
        "SELECT t.typname, t.typtype, format_type(t.typbasetype, t.typtypmod), t.typnotnull, "
        "(SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid), "
        "(SELECT string_agg(pg_get_constraintdef(k.oid), ';' ORDER BY k.conname) FROM pg_constraint k "
        "  WHERE k.contypid = t.oid) "
        "FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        f"WHERE n.nspname = %s AND t.typtype IN ('e', 'd', 'r', 'm') AND {not_extension.format('t')} "
        'ORDER BY t.typname COLLATE "C"',
        (schema,),
    ).fetchall():
        add(f"type {name}", kind, base, notnull, labels, checks)
    ddl = {
        key: hashlib.sha256("\n".join(lines).encode()).hexdigest() for key, lines in sorted(objects.items())
    }
    return {
        "schema": schema,
        "version": version,
        "tables": tables,
        "sequences": sequences,
        "ddl": {"sha256": canonical_hash(ddl), "objects": ddl},
    }


# --- helpers ------------------------------------------------------------------------------------


def _restrict_key(snapshot: Mapping[str, Any]) -> str:
    """pg_dump's ``\\restrict`` key, derived from what is dumped, so the same content dumps to the same bytes.

    (The key only has to be unguessable for whoever writes the data; the rows' own digest is.)
    """
    return hashlib.sha256(("gates-upgrade-drill:" + canonical_hash(dict(snapshot))).encode()).hexdigest()[:32]


def _pgpass_field(value: str | None) -> str:
    return (value or "").replace("\\", "\\\\").replace(":", "\\:")


def _fields(stdout: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isalnum():
            out[key] = value
    return out


def _b64(value: str) -> str:
    try:
        return base64.b64decode(value).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""
