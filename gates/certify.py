"""`gates run`: certify a deployment with the selected gates, write reports, print the summary."""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from conformance import clock
from conformance.errors import ConfigError
from conformance.profile import Profile, load_profile, parse_sets
from conformance.redact import Redactor
from conformance.waivers import Waiver, load_waivers
from conformance.yamlsource import YamlDocument
from gates import dashboard
from gates import report as reports
from gates.evaluate import Component, Evaluation, evaluate, evaluate_rollup, exit_code, waiver_findings
from gates.gate import (
    Gate,
    build_gate,
    builtin_gates,
    builtin_path,
    components,
    expand,
    load_gate,
    parse_gate,
    required_checks,
)
from gates.runner import SuiteProcess
from gates.summary import print_summary, print_waivers


def _gate_names(profile: Profile, names: list[str]) -> list[str]:
    chosen = names or list(profile.gates)
    if not chosen:
        raise ConfigError(f"profile {profile.name!r} lists no gates; pass --gate NAME", source=profile.source)
    if not names:  # the profile's own list: an unknown name is the profile's error, at its line
        for i, name in enumerate(chosen):
            if builtin_path(name, profile.name) is None and not Path(name).is_file():
                raise ConfigError(
                    f"unknown gate {name!r} in the profile's gates: not a built-in "
                    f"({', '.join(builtin_gates(profile.name))}) and no such file",
                    source=profile.source,
                    location=profile.gates_at[i] if i < len(profile.gates_at) else None,
                )
    return chosen


def _select_gates(profile: Profile, names: list[str]) -> list[Gate]:
    gates = [load_gate(n, profile=profile.name) for n in _gate_names(profile, names)]
    _no_duplicates(gates)
    return gates


def _with_components(docs: list[YamlDocument], profile: Profile) -> list[YamlDocument]:
    """The selected gate files plus the applicable components of any roll-up, components first, each once."""
    out: dict[str, YamlDocument] = {}
    for doc in docs:
        for name in build_gate(doc, profile=profile.name).applicable(profile.serving_mode):
            if name not in out:
                comp = parse_gate(name, profile=profile.name)
                if components(comp):
                    raise ConfigError(
                        f"roll-up gate {doc.data['name']!r} names {name!r}, which is itself a roll-up",
                        source=doc.source,
                    )
                out[name] = comp
        out.setdefault(str(doc.data["name"]), doc)
    return list(out.values())


def _drill_declined(instance_id: str) -> dict[str, Any]:
    return {
        "id": instance_id,
        "outcome": "not_run",
        "reasonCode": "drill_not_allowed",
        "message": "a drill changes the target (and restores it), so it runs only when allowed",
        "remediation": "Re-run with --allow-drills to exercise it.",
    }


def _spend_declined(instance_id: str) -> dict[str, Any]:
    return {
        "id": instance_id,
        "outcome": "not_run",
        "reasonCode": "spend_not_allowed",
        "message": "this check pays for a real call, so it runs only within an explicit spend allowance",
        "remediation": "Re-run with --allow-spend-cents N (the most the run may pay for one offer).",
    }


def _supplied(paths: list[Path] | None, profile: Profile) -> dict[str, Component]:
    """Verified gate reports given with ``--supplied``, by gate name: evidence from an earlier run.

    Each must verify (schema and artifactHash), be a report of this engine's own shape and
    certify the same profile; anything else is a usage error naming the file.
    """
    out: dict[str, Component] = {}
    for path in paths or []:
        body = reports.verify(path)
        if body.get("schemaVersion") != reports.SCHEMA_VERSION:
            raise ConfigError(
                f"only {reports.SCHEMA_VERSION} reports can be supplied (this is {body.get('schemaVersion')!r})",
                source=str(path),
            )
        inputs = body["inputs"]
        if inputs["profile"] != profile.name:
            raise ConfigError(
                f"the report certifies profile {inputs['profile']!r}, not {profile.name!r}",
                source=str(path),
                location="inputs.profile",
            )
        if inputs["gate"] in out:
            raise ConfigError(f"a report for gate {inputs['gate']!r} is supplied twice", source=str(path))
        out[inputs["gate"]] = Component(
            gate=inputs["gate"],
            report=path.name,
            evaluation=Evaluation(
                checks=body["checks"], blocking=body["blockingIssues"], verdict=body["verdict"]
            ),
            artifact_hash=body["artifactHash"],
            supplied=str(path),
        )
    return out


def _better(ran: Component | None, supplied: Component | None) -> Component | None:
    """A component's evidence: this run's outcome, unless this run could not decide it (it did not run,
    or is incomplete) and a supplied report passed. A failure seen now is never outweighed."""
    undecided = ran is None or ran.evaluation.status == "incomplete"
    if supplied is not None and supplied.evaluation.status == "pass" and undecided:
        return supplied
    return ran


def _prepare_formats(gates: list[Gate], profile: Profile) -> None:
    """Let each foreign report format refuse the profile (say, an unreadable signing key) before the run."""
    from gates import formats

    for gate in gates:
        if gate.format != "gates":
            formats.get(gate.format, source=gate.source).prepare(profile)


def _no_duplicates(gates: list[Gate]) -> None:
    seen: set[str] = set()
    for gate in gates:
        if gate.name in seen:
            raise ConfigError(f"gate {gate.name!r} selected twice", source="<argument --gate>")
        seen.add(gate.name)


def writable_out(directory: Path) -> None:
    """Refuse an output directory that cannot be created or written before any check runs."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".gates-write-test-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot write reports to {str(directory)!r}: {exc.strerror or exc}", source="<argument --out>"
        ) from None


def certify(
    *,
    profile_arg: str,
    sets: list[str],
    gate_args: list[str],
    target: str,
    out: Path,
    captured_at: str | None,
    timeout_s: float,
    stdout: IO[str],
    stderr: IO[str],
    quiet: bool,
    early: SuiteProcess | None = None,
    allow_drills: bool = False,
    supplied: list[Path] | None = None,
    allow_spend_cents: int | None = None,
    waivers_file: Path | None = None,
) -> int:
    """Run the selected gates against the deployment, write the reports, print the summary.

    ``early`` is a check run the caller already started (for all of the profile's checks);
    it is stopped if anything here turns out to be invalid.
    """
    started = early.started if early is not None else time.monotonic()
    suite_process = early
    try:
        profile = load_profile(profile_arg, parse_sets(sets))
        docs = _with_components(
            [parse_gate(n, profile=profile.name) for n in _gate_names(profile, gate_args)], profile
        )
        supplied_components = _supplied(supplied, profile)
        waivers = _load_waivers(waivers_file)
        checks = sorted({c for doc in docs for c in required_checks(doc)})
        from conformance.targets import check_target

        check_target(target)  # refuse an unsupported target, or a namespace that is not there
        writable_out(out)  # before any check runs, not after all of them
        if suite_process is None:
            # The check run starts now; resolving check ids and expanding gates overlaps with it.
            suite_process = SuiteProcess(
                profile=profile_arg,
                sets=sets,
                target=target,
                checks=checks,
                out=out,
                allow_drills=allow_drills,
                allow_spend_cents=allow_spend_cents,
                waivers=waivers_file,
            )
        gates = [build_gate(doc, profile=profile.name) for doc in docs]
        _no_duplicates(gates)
        _prepare_formats(gates, profile)
        expansions = {g.name: expand(g, profile) for g in gates if not g.rollup}
    except BaseException:
        if suite_process is not None:
            suite_process.kill()
        raise
    spend = allow_spend_cents is not None
    wanted = {
        i.id
        for e in expansions.values()
        for i in e.instances
        if (allow_drills or not i.drill) and (spend or not i.spends)
    }
    total = len(wanted)
    last = [0.0]

    def progress(finished: frozenset[str], elapsed: float) -> None:
        # the check run may cover more of the profile than the selected gates: count only what they require
        if not quiet and elapsed - last[0] >= 1.0:
            last[0] = elapsed
            done = len(wanted & finished)
            print(f"gates: {done}/{total} checks done ({elapsed:.1f}s)", file=stderr, flush=True)

    if not quiet:
        print(
            f"gates: certifying profile {profile.name!r}: {len(gates)} gate(s), {total} check instance(s)",
            file=stderr,
            flush=True,
        )
    suite = suite_process.wait(timeout_s=timeout_s, progress=progress)
    if suite.timed_out:
        print(
            f"gates: the run exceeded --timeout {timeout_s:g}s and was stopped; unfinished checks are not_run",
            file=stderr,
        )
    elif suite.returncode not in (0, 1):
        print(
            f"gates: the check run ended with pytest exit code {suite.returncode}; see {suite.log}"
            + (_memory_note() if _ran_out_of_memory(suite.log) else ""),
            file=stderr,
        )
    redactor = Redactor(profile.secrets())
    results = dict(suite.results)
    for expansion in expansions.values():
        for inst in expansion.instances:
            if inst.drill and not allow_drills:
                results.setdefault(inst.id, _drill_declined(inst.id))
            elif inst.spends and not spend:
                results.setdefault(inst.id, _spend_declined(inst.id))
    today = clock.now().date()
    evaluations = {
        g.name: evaluate(g, expansions[g.name], results, waivers=waivers, today=today)
        for g in gates
        if not g.rollup
    }
    findings = None if waivers is None else waiver_findings(waivers, evaluations.values(), today)
    statuses = []
    rows = []
    views = []
    done: dict[str, Component] = {}
    for gate in sorted(gates, key=lambda g: g.rollup):  # components before the roll-ups that read them
        report_components = None
        if gate.rollup:
            applicable = gate.applicable(profile.serving_mode)
            chosen = {n: _better(done.get(n), supplied_components.get(n)) for n in applicable}
            used = {n: c for n, c in chosen.items() if c is not None}
            evaluation = evaluate_rollup(gate, list(used.values()), applicable)
            report_components = [
                {"gate": n, "report": c.report, "status": c.evaluation.status, "artifactHash": c.artifact_hash,
                 **({"supplied": c.supplied} if c.supplied else {})}
                for n, c in used.items()
            ]  # fmt: skip
        else:
            evaluation = evaluations[gate.name]
        body = reports.build(
            gate, profile, evaluation, target=target, captured_at=captured_at, redactor=redactor,
            components=report_components, waivers=findings,
        )  # fmt: skip
        path = out / "gates" / gate.report
        reports.write(body, path)
        done[gate.name] = Component(
            gate=gate.name, report=gate.report, evaluation=evaluation, artifact_hash=body["artifactHash"]
        )
        statuses.append(evaluation.status)
        rows.append((gate, evaluation, path, body["artifactHash"]))
        views.append(dashboard.view_of(gate, evaluation, body, redactor))
    code = exit_code(statuses)
    run = dashboard.Run(
        profile=profile.name, target=target, generated_at=clock.iso_millis(clock.now()), captured_at=captured_at,
        exit_code=code, waivers=findings,
    )  # fmt: skip
    dashboard.write(out / "report.html", run, views)
    _scrub_files(redactor, [out / "junit.xml", out / "report.html", out / "pytest-report.html", suite.log])
    # the console is evidence too (CI logs keep it): it is scrubbed like every file the run writes
    console = io.StringIO()
    print_summary(rows, time.monotonic() - started, console)
    if findings is not None:
        print_waivers(findings, console)
    stdout.write(redactor.text(console.getvalue()))
    return code


def _load_waivers(path: Path | None) -> tuple[Waiver, ...] | None:
    if path is None:
        return None
    from conformance.checks import load_suite

    return load_waivers(path, load_suite())


def _ran_out_of_memory(log: Path) -> bool:
    try:
        with log.open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 65536))
            tail = handle.read()
            return b"MemoryError" in tail or b"can't start new thread" in tail
    except OSError:
        return False


def _memory_note() -> str:
    from gates.runner import memory_limit_bytes

    return (
        f"; it ran out of memory under its limit of {memory_limit_bytes() >> 20} MiB "
        "(--memory-limit-mb, GATES_SUITE_MEMORY_MB)"
    )


def _scrub_files(redactor: Redactor, paths: list[Path]) -> None:
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        clean = redactor.text(text)
        if clean != text:
            path.write_text(clean, encoding="utf-8")
