"""Read a database's applied migrations and the heads its running release expects."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from conformance.errors import ProbeError, ProbeTimeout, ProbeUnreachable, Undetermined
from conformance.function import head_lines
from conformance.probes.base import Context
from conformance.probes.pgsession import message, pg_session

# The command's output, bounded; its exit code is the last line.
_RUN = 'out=$(timeout "$1" sh -c "$2" 2>&1); rc=$?; printf \'%s\\n\' "$out" | head -c 65536; echo; echo "gates-rc=$rc"'


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandOutput:
    """What a command on the target printed (stdout and stderr together) and its exit code."""

    command: str
    rc: int
    output: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetCommand:
    """Run a shell command on the target within ``timeout_s``."""

    command: str
    timeout_s: int

    def observe(self, ctx: Context) -> CommandOutput:
        """The command's exit code and output; a target we cannot run commands on is unobservable."""
        result = ctx.host.run("sh -c %s gates-command %s %s", _RUN, str(self.timeout_s), self.command)
        text = str(result.stdout)
        body, sep, tail = text.rstrip("\n").rpartition("\ngates-rc=")
        if not sep or not tail.strip().isdigit():
            raise ProbeError(f"cannot run {self.command!r} on the target: {str(result.stderr).strip()[:200]}")
        rc = int(tail.strip())
        if rc == 124:
            raise ProbeTimeout(f"{self.command!r} did not finish within {self.timeout_s}s on the target")
        return CommandOutput(command=self.command, rc=rc, output=body.strip("\n"))


@dataclass(frozen=True, slots=True, kw_only=True)
class AppliedMigrations:
    """Which migrations a table records as applied (``table_found`` False: no such table)."""

    table_found: bool
    applied: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrationsTable:
    """Every value of ``schema.table.column`` in a database, read as the declared role."""

    address: str
    port: int
    dbname: str
    user: str
    table: str
    column: str
    schema: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def qualified(self) -> str:
        """``schema.table`` as declared."""
        return f"{self.schema}.{self.table}" if self.schema else self.table

    def observe(self, ctx: Context) -> AppliedMigrations:
        """Read the column; a missing table is an observation, a database we cannot log in to is not."""
        where = f"postgres at {self.address}:{self.port}/{self.dbname}"
        try:
            with pg_session(
                ctx, address=self.address, port=self.port, dbname=self.dbname, user=self.user,
                password=self.password, where=where,
            ) as conn:  # fmt: skip
                found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (self.qualified,)).fetchone()
                if found is None or not found[0]:
                    return AppliedMigrations(table_found=False, applied=())
                table = sql.Identifier(self.schema, self.table) if self.schema else sql.Identifier(self.table)
                query = sql.SQL("SELECT {}::text FROM {}").format(sql.Identifier(self.column), table)
                rows = conn.execute(query).fetchall()
                return AppliedMigrations(
                    table_found=True, applied=tuple(sorted({str(r[0]) for r in rows if r[0] is not None}))
                )
        except psycopg.Error as exc:
            raise ProbeUnreachable(f"{where}: {message(exc, self.password)}") from exc


def heads_of(out: CommandOutput) -> tuple[str, ...]:
    """The heads a command printed (each line's first word)."""
    return head_lines(out.output)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadObservation:
    """What the database records as applied, and what the release says it expects."""

    table: str | None  # the migrations table read (None: a command printed them)
    table_found: bool
    applied: tuple[str, ...]
    expected: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadProbe:
    """Read both sides of one schema head: the applied migrations and the release's expected heads."""

    applied: MigrationsTable | TargetCommand
    expected: TargetCommand

    def observe(self, ctx: Context) -> HeadObservation:
        """Both reads; a command that fails cannot say what the release expects, so it is no observation."""
        want = command_heads(self.expected.observe(ctx), "the release's heads")
        if isinstance(self.applied, TargetCommand):
            return HeadObservation(
                table=None,
                table_found=True,
                applied=command_heads(self.applied.observe(ctx), "the applied migrations", may_be_empty=True),
                expected=want,
            )
        got: AppliedMigrations = self.applied.observe(ctx)
        return HeadObservation(
            table=self.applied.qualified, table_found=got.table_found, applied=got.applied, expected=want
        )


def command_heads(out: CommandOutput, what: str, *, may_be_empty: bool = False) -> tuple[str, ...]:
    """The heads a command printed; a command that failed (or printed no head where one must be) is no
    observation."""
    heads = heads_of(out)
    if out.rc != 0 or not (heads or may_be_empty):
        raise Undetermined(f"{out.command!r} exited {out.rc} without printing {what}: {out.output[-300:]!r}")
    return heads
