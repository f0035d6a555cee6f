"""The ``gates`` command line.

Exit codes: 0 every selected gate passed; 1 a gate failed; 2 usage or configuration
error; 3 incomplete or could not determine. ``verify-receipt``: 0 every property holds, 1 one
does not, 2 the bundle is missing, malformed or was edited.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

from conformance.errors import ConfigError
from gates.runner import DEFAULT_MEMORY_MB, MEMORY_ENV, SuiteProcess

# Only light modules are imported here: `gates run` starts the check run first and loads
# the heavier parts (schemas, profiles, gates, reports) while it runs.

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see '{self.prog} --help')", source="<arguments>")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gates",
        description="Certify a live deployment against its profile and write gate "
        "reports (exit 0 pass, 1 fail, 2 usage/config error, 3 incomplete).",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run gates against a deployment and write reports")
    run.add_argument(
        "--profile", required=True, metavar="NAME|PATH", help="built-in profile name or profile file"
    )
    run.add_argument(
        "--gate",
        action="append",
        default=[],
        metavar="NAME|PATH",
        help="gate to run (repeatable; default: every gate the profile lists)",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        dest="sets",
        help="override a profile variable (repeatable)",
    )
    run.add_argument(
        "--target",
        default="local",
        help="how to reach the host: local (default), ssh://user@host[:port] or netns://NAME",
    )
    run.add_argument("--ssh-config", default=None, type=Path, help="ssh_config file for an ssh:// target")
    run.add_argument("--ssh-identity", default=None, type=Path, help="private key file for an ssh:// target")
    run.add_argument("--out", default="artifacts", type=Path, help="output directory (default: artifacts/)")
    run.add_argument(
        "--captured-at",
        default=None,
        type=_timestamp,
        help="capture timestamp recorded in (and hashed with) reports: ISO 8601 with a zone (2026-01-01T00:00:00Z)",
    )
    run.add_argument(
        "--timeout",
        type=_seconds,
        default=300.0,
        help="wall-clock limit for the whole run, seconds (positive)",
    )
    run.add_argument(
        "--memory-limit-mb",
        type=_megabytes,
        default=None,
        metavar="MB",
        help=f"memory limit of the check run, MiB (default {DEFAULT_MEMORY_MB}, or ${MEMORY_ENV})",
    )
    run.add_argument("--quiet", action="store_true", help="print only the summary table")
    run.add_argument(
        "--allow-drills",
        action="store_true",
        help="run drills (deploy/rollback exercises that change the target and restore it); "
        "without it they are reported not run and gates requiring them stay incomplete",
    )
    run.add_argument(
        "--waivers",
        type=Path,
        default=None,
        metavar="FILE",
        help="accepted exceptions (schemas/waivers.schema.json): a failing check a live waiver covers is "
        "reported waived and does not block; expired and idle waivers are reported",
    )
    run.add_argument(
        "--supplied",
        action="append",
        default=[],
        type=Path,
        metavar="REPORT",
        help="a verified gate report from an earlier run of the same profile; a roll-up counts it for a "
        "component this run could not decide (repeatable)",
    )
    run.add_argument(
        "--allow-spend-cents",
        type=_cents,
        default=None,
        metavar="N",
        help="run checks that pay for a real call (the paid tool call), paying no offer above N cents; the replay "
        "audit needs twice the offer; without it they are reported not run and gates requiring them stay incomplete",
    )

    init = sub.add_parser(
        "init",
        help="observe a live host and print a starting profile that certifies it (exit 0, 2 bad arguments, 3 "
        "the host could not be observed)",
    )
    init.add_argument(
        "--target",
        default="local",
        help="the host to observe: local (default), ssh://user@host[:port] or netns://NAME",
    )
    init.add_argument("--name", default="my-deployment", type=_profile_name, help="the profile's name")
    init.add_argument("--ssh-config", default=None, type=Path, help="ssh_config file for an ssh:// target")
    init.add_argument("--ssh-identity", default=None, type=Path, help="private key file for an ssh:// target")

    lst = sub.add_parser("list", help="list a profile's gates and their check instances")
    lst.add_argument("--profile", required=True, metavar="NAME|PATH")
    lst.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="sets")

    faults = sub.add_parser("faults", help="list a reference's faults and the check ids each must trip")
    faults.add_argument("name")

    ref = sub.add_parser("reference", help="start or stop an embedded reference deployment")
    ref_sub = ref.add_subparsers(dest="action", required=True, parser_class=_Parser)
    ref_up = ref_sub.add_parser("up", help="start it in the background")
    ref_up.add_argument("name")
    ref_up.add_argument(
        "--fault", default=None, metavar="ID", help="inject one fault (see 'gates faults NAME')"
    )
    ref_up.add_argument(
        "--source",
        type=Path,
        default=None,
        metavar="DIR|TARBALL",
        help="the upstream source a reference runs (nooterra-upstream, oroboros-upstream: a checkout or a tarball)",
    )
    ref_up.add_argument("--state-dir", type=Path, default=None, help=argparse.SUPPRESS)
    ref_down = ref_sub.add_parser("down", help="stop it and remove its files")
    ref_down.add_argument("name")
    ref_down.add_argument("--state-dir", type=Path, default=None, help=argparse.SUPPRESS)

    demo = sub.add_parser(
        "demo", help="start a reference, run every gate it supports, print a summary, stop it"
    )
    demo.add_argument("name", nargs="?", default="oroboros")
    demo.add_argument("--fault", default=None, metavar="ID")
    demo.add_argument("--out", default="artifacts", type=Path)
    demo.add_argument("--source", type=Path, default=None, metavar="DIR|TARBALL", help=argparse.SUPPRESS)
    demo.add_argument(
        "--expect",
        type=Path,
        default=None,
        metavar="FILE",
        help="a committed verdict table: certify every gate it lists and exit 0 when every verdict equals it, "
        "1 with the differences otherwise",
    )

    verify = sub.add_parser(
        "verify-report", help="validate gate reports, recompute their artifactHash and check signatures"
    )
    verify.add_argument("reports", nargs="+", type=Path)
    verify.add_argument(
        "--public-key",
        action="append",
        default=[],
        metavar="[KEY_ID=]PEM",
        help="Ed25519 public key (SPKI PEM) trusted to sign reports (repeatable; KEY_ID= binds it to the "
        "signature's keyId); given one, signed formats must carry a signature that verifies",
    )

    diff = sub.add_parser(
        "diff",
        help="compare two certifications (output directories or reports): exit 0 nothing regressed, "
        "1 a regression, 2 bad input",
    )
    diff.add_argument("old", type=Path, metavar="OLD", help="the earlier --out directory or gate report")
    diff.add_argument("new", type=Path, metavar="NEW", help="the later --out directory or gate report")
    diff.add_argument("--json", action="store_true", help="print the comparison as JSON")

    receipt = sub.add_parser(
        "verify-receipt",
        help="verify a paid call and its receipt offline from its artifact bundle (exit 0 pass, 1 fail, 2 bad input)",
    )
    receipt.add_argument(
        "bundle", type=Path, metavar="DIR", help="a bundle directory: <out>/paid-call/<gateId>"
    )
    return parser


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(
            f"expected a positive number of seconds, got {value!r}", source="<argument --timeout>"
        )
    return seconds


def _megabytes(value: str) -> int:
    if not value.strip().isdigit() or not 64 <= int(value) <= 1 << 20:
        raise ConfigError(
            f"expected a whole number of MiB from 64 to {1 << 20}, got {value!r}",
            source="<argument --memory-limit-mb>",
        )
    return int(value)


def _timestamp(value: str) -> str:
    """An ISO 8601 timestamp with a zone, kept as written (it is hashed into reports as given)."""
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"expected an ISO 8601 timestamp such as 2026-01-01T00:00:00Z, got {value!r}",
            source="<argument --captured-at>",
        ) from None
    if parsed.tzinfo is None:
        raise ConfigError(
            f"the timestamp {value!r} has no zone: add Z or an offset such as +00:00",
            source="<argument --captured-at>",
        )
    return value


def _profile_name(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9-]*", value):
        raise ConfigError(
            f"a profile name is lower-case letters, digits and '-', starting with a letter; got {value!r}",
            source="<argument --name>",
        )
    return value


def _cents(value: str) -> int:
    if not value.strip().isdigit():
        raise ConfigError(
            f"--allow-spend-cents expects a whole number of cents, got {value!r}", source="<arguments>"
        )
    return int(value)


def run(argv: Sequence[str], *, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    """Run the CLI and return its exit code; never raises for bad input."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        args = _parser().parse_args(list(argv))
        command = {
            "run": _cmd_run,
            "init": _cmd_init,
            "list": _cmd_list,
            "faults": _cmd_faults,
            "reference": _cmd_reference,
            "demo": _cmd_demo,
            "verify-report": _cmd_verify,
            "verify-receipt": _cmd_verify_receipt,
            "diff": _cmd_diff,
        }[args.command]
        return command(args, out, err)
    except ConfigError as exc:
        print(f"gates: error: {exc.render()}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("gates: interrupted", file=err)
        return EXIT_INCOMPLETE
    except BrokenPipeError:
        raise
    except OSError as exc:  # e.g. an --out directory that cannot be written
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"gates: error: {where}{exc.strerror or exc}", file=err)
        return EXIT_USAGE


def main() -> NoReturn:
    """Entry point of the ``gates`` script."""
    try:
        code = run(sys.argv[1:])
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (e.g. `| head`); the verdict still decides the code
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_INCOMPLETE
    sys.exit(code)


def _ssh_options(args: argparse.Namespace) -> None:
    """Export --ssh-config and --ssh-identity where every SSH connection of the command reads them."""
    for option, variable in (
        (args.ssh_config, "GATES_SSH_CONFIG"),
        (args.ssh_identity, "GATES_SSH_IDENTITY"),
    ):
        if option is not None:
            if not option.is_file():
                raise ConfigError("no such file", source=str(option))
            os.environ[variable] = str(option.resolve())  # read by the check run's SSH connections


def _cmd_init(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from conformance.errors import ProbeError
    from gates.scaffold import run_init

    _ssh_options(args)
    try:
        return run_init(args.target, args.name, out)
    except ProbeError as exc:
        print(f"gates: init: cannot observe {args.target}: {exc}", file=err)
        return EXIT_INCOMPLETE


def _cmd_run(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    _ssh_options(args)
    if args.memory_limit_mb is not None:
        os.environ[MEMORY_ENV] = str(args.memory_limit_mb)  # read by the check run's launcher
    # Start checking before anything else is loaded: every check of the profile runs, the
    # reports cover the selected gates.
    # A drill must run only for the gates that require it, so a run that allows drills starts once the
    # selected gates are known.
    # So must a check that pays: it runs only for the selected gates.
    early = (
        None
        if args.allow_drills or args.allow_spend_cents is not None
        else SuiteProcess(
            profile=args.profile,
            sets=args.sets,
            target=args.target,
            checks=[],
            out=args.out,
            waivers=args.waivers and args.waivers.resolve(),
        )
    )
    from gates.certify import certify

    return certify(
        early=early,
        profile_arg=args.profile,
        sets=args.sets,
        gate_args=args.gate,
        target=args.target,
        out=args.out,
        captured_at=args.captured_at,
        timeout_s=args.timeout,
        stdout=out,
        stderr=err,
        quiet=args.quiet,
        allow_drills=args.allow_drills,
        supplied=args.supplied,
        allow_spend_cents=args.allow_spend_cents,
        waivers_file=args.waivers and args.waivers.resolve(),
    )


# --- list, faults, verify --------------------------------------------------------------------


def _list_variables(profile: Any, out: IO[str]) -> None:
    """Each variable: name, default (a secret's never shown), secret or not, env var, description."""
    rows = [("variable", "default", "secret", "env", "description")]
    for v in profile.variables:
        default = "(hidden)" if v.secret and v.default else (v.default if v.default != "" else '""')
        rows.append((v.name, default, "yes" if v.secret else "no", v.env or "-", v.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"variables of profile {profile.name!r} (set with --set NAME=VALUE, or the env var):", file=out)
    for row in rows:
        line = "  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        print(("  " + line).rstrip(), file=out)
    print(file=out)


def _cmd_list(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from conformance.checks import catalog
    from conformance.profile import load_profile, parse_sets
    from gates.certify import _select_gates
    from gates.gate import Expansion, expand

    profile = load_profile(args.profile, parse_sets(args.sets))
    _list_variables(profile, out)
    for gate in _select_gates(profile, []):
        print(f"{gate.name}\t{gate.source}\t-> gates/{gate.report}", file=out)
        if gate.rollup:
            for name in gate.components:
                print(f"  gate {name}", file=out)
            continue
        exp: Expansion = expand(gate, profile)
        for inst in exp.instances:
            note = (
                "  (drill: --allow-drills)"
                if inst.drill
                else "  (pays: --allow-spend-cents)"
                if inst.spends
                else ""
            )
            print(f"  {inst.id}{note}", file=out)
        needs = dict(exp.needs)
        for check_id in exp.unmatched:
            why = (
                "needs systemd; processManager is none"
                if exp.reason(check_id) == "requires_systemd"
                else "no target in this profile"
            )
            hint = f"; set {needs[check_id]}" if check_id in needs else ""
            print(f"  {check_id}[?]  ({why}: the gate will be incomplete{hint})", file=out)
    other = sorted(
        {i.id for i in catalog(profile)}
        - {i.id for g in _select_gates(profile, []) for i in expand(g, profile).instances}
    )
    if other:
        print("not required by any gate of this profile:", file=out)
        for inst_id in other:
            print(f"  {inst_id}", file=out)
    return EXIT_PASS


def _reference(name: str) -> Any:
    from fixtures.registry import REFERENCES

    if name not in REFERENCES:
        raise ConfigError(
            f"unknown reference {name!r}; available: {', '.join(sorted(REFERENCES))}",
            source="<argument NAME>",
        )
    return REFERENCES[name]


def _cmd_faults(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from fixtures.registry import REFERENCES

    ref = _reference(args.name)
    for fault in ref.faults:
        print(f"{fault.id}\t{','.join(sorted(fault.trips))}", file=out)
    # the other references certifying the same profile complete its catalogue (systemd-only checks, ...)
    for other in REFERENCES.values():
        if other.profile == ref.profile and other.name != ref.name:
            for fault in other.faults:
                print(f"{other.name}:{fault.id}\t{','.join(sorted(fault.trips))}", file=out)
    return EXIT_PASS


def _cmd_diff(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from gates.diff import run_diff

    return run_diff(args.old, args.new, as_json=args.json, out=out)


def _cmd_verify(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from gates import report as reports
    from gates.evaluate import exit_code

    trusted = []
    if args.public_key:
        from gates.signing import load_trusted_key

        trusted = [load_trusted_key(spec) for spec in args.public_key]
    statuses = []
    for path in args.reports:
        body = reports.verify(path, trusted_keys=trusted)
        status = reports.status_of(body)
        statuses.append(status)
        signature = reports.signature_state(body, trusted)
        print(
            f"{path}: artifactHash ok ({body['artifactHash'][:16]}...), "
            + (f"{signature}, " if signature else "")
            + f"verdict {status}",
            file=out,
        )
    return exit_code(statuses)


def _cmd_verify_receipt(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from conformance import paidcall, paidcall_bundle
    from conformance.errors import ProbeError, SpendNotAllowed

    evidence = paidcall_bundle.load(args.bundle)
    print(
        f"{args.bundle}: paid call {evidence.name} {evidence.path} via {evidence.gateway_url}, "
        f"gate {evidence.gate_id or '(none)'}, captured {evidence.started_at}",
        file=out,
    )
    failed = skipped = 0
    for check_id in paidcall.PROPERTIES:
        try:
            findings = paidcall.evaluate(check_id, evidence)
        except SpendNotAllowed as exc:
            skipped += 1
            print(f"SKIP  {check_id}: not performed by the run: {exc}", file=out)
            continue
        except ProbeError as exc:
            failed += 1
            print(f"FAIL  {check_id}: {exc.reason_code}: {exc}", file=out)
            continue
        bad = [f for f in findings if f.status == "fail"]
        if bad:
            failed += 1
            print(f"FAIL  {check_id}", file=out)
            for f in bad:
                print(f"      {f.prop}: {f.code}: {f.message}", file=out)
            continue
        print(f"PASS  {check_id}", file=out)
        for f in findings:
            if f.status == "skip":
                print(f"      {f.prop}: not repeatable offline: {f.message}", file=out)
    total = len(paidcall.PROPERTIES)
    verdict = "fail" if failed else "pass"
    print(
        f"verdict: {verdict} ({total - failed - skipped} passed, {failed} failed, {skipped} not performed)",
        file=out,
    )
    return EXIT_FAIL if failed else EXIT_PASS


# --- reference, demo -------------------------------------------------------------------------


def _check_fault(ref: Any, fault_id: str | None) -> str | None:
    """The fault id to inject into ``ref`` (``REFERENCE:ID`` as 'gates faults' lists it is accepted)."""
    if fault_id is not None and ":" in fault_id:
        owner, _, bare = fault_id.partition(":")
        if owner != ref.name:
            raise ConfigError(
                f"fault {bare!r} belongs to reference {owner!r}: run it there (gates reference up {owner} "
                f"--fault {bare})",
                source="<argument --fault>",
            )
        fault_id = bare
    if fault_id is not None and fault_id not in {f.id for f in ref.faults}:
        raise ConfigError(
            f"unknown fault {fault_id!r} for {ref.name}; see 'gates faults {ref.name}'",
            source="<argument --fault>",
        )
    return fault_id


def _cmd_reference(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from fixtures.registry import ReferenceError_

    ref = _reference(args.name)
    state = args.state_dir or ref.state_dir()
    try:
        if args.action == "up":
            args.fault = _check_fault(ref, args.fault)
            started = time.monotonic()
            run_args = ref.up(state, args.fault, args.source)
            note = f" with fault {args.fault}" if args.fault else ""
            print(
                f"reference {ref.name} is up{note} ({time.monotonic() - started:.1f}s); state in {state}",
                file=out,
            )
            print("certify it with: gates run " + " ".join(run_args), file=err)
            if ref.environment:
                names = ", ".join(name for name, _ in ref.environment)
                print(f"the run reads {names} from the environment (the reference's own values)", file=err)
            print(" ".join(run_args), file=out)
            return EXIT_PASS
        stopped = ref.down(state)
        print(f"reference {ref.name} is down ({stopped} process(es) stopped)", file=out)
        return EXIT_PASS
    except ReferenceError_ as exc:
        print(f"gates: reference {ref.name}: {exc}", file=err)
        return EXIT_INCOMPLETE


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set ``values`` in the environment (where the check run reads secrets) for the duration, then restore it."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def _cmd_demo(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from fixtures.registry import ReferenceError_

    ref = _reference(args.name)
    args.fault = _check_fault(ref, args.fault)
    from gates import expect
    from gates.certify import writable_out

    table = expect.load(args.expect) if args.expect is not None else None
    writable_out(args.out)
    state = ref.state_dir().with_name(f"{ref.name}-demo")
    print(
        f"gates demo: starting reference {ref.name}" + (f" with fault {args.fault}" if args.fault else ""),
        file=err,
        flush=True,
    )
    try:
        ref.down(state)
        run_args = ref.up(state, args.fault, args.source)
    except ReferenceError_ as exc:
        ref.down(state)
        print(f"gates: reference {ref.name}: {exc}", file=err)
        return EXIT_INCOMPLETE
    try:
        if table is not None:  # exactly the gates the table lists
            gate_at = {i for i, a in enumerate(run_args) if a == "--gate"}
            run_args = [a for i, a in enumerate(run_args) if i not in gate_at and i - 1 not in gate_at]
            run_args += [x for gate in table.gates for x in ("--gate", gate)]
        run_args = ["run", *run_args, "--out", str(args.out), *(["--allow-drills"] if ref.disposable else [])]
        if ref.run_timeout_s is not None:
            run_args += ["--timeout", str(ref.run_timeout_s)]
        if ref.spend_cents is not None:  # the reference's own test money; never a real deployment's
            run_args += ["--allow-spend-cents", str(ref.spend_cents)]
        with _environment(dict(ref.environment)):
            code = _cmd_run(_parser().parse_args(run_args), out, err)
        if table is None or code == EXIT_USAGE:
            return code
        gates, checks = expect.observe(args.out, table)
        found = expect.differences(table, gates, checks)
        if not found:
            print(f"gates demo: every verdict equals {table.source} ({len(gates)} gates, {len(checks)} checks)",
                  file=out)  # fmt: skip
            return EXIT_PASS
        print(f"gates demo: {len(found)} verdict(s) differ from {table.source}:", file=out)
        for line in found:
            print(f"  {line}", file=out)
        return EXIT_FAIL
    finally:
        ref.down(state)
        print(f"gates demo: reference {ref.name} stopped", file=err)
