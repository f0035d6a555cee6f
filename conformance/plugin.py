"""pytest plugin: run the conformance suite against a deployment described by a profile.

Inert unless ``--gates-profile`` is given. It parametrizes every registered check over the
profile's matching targets (ids read ``check[target]``), starts every probe the collected
checks need at once on a thread pool, maps pytest outcomes to pass/fail/error/skip, and —
on the controller only — streams one JSON result per check instance to ``--gates-results``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Generator
from pathlib import Path
from typing import IO, Any, Literal

import pytest

from conformance import clock
from conformance.checks import (
    CURRENT_EVIDENCE,
    CheckFailed,
    CheckSpec,
    Evidence,
    instance_id,
    load_suite,
    spec_of,
)
from conformance.errors import ConfigError, ConnectionRefused, ProbeError
from conformance.probes.base import Context, Prober
from conformance.probes.resolve import resolve
from conformance.profile import Profile, load_profile, parse_sets, url_endpoint
from conformance.redact import Redactor
from conformance.targets import Target, make_target
from conformance.waivers import Waiver, live_waiver, load_waivers

PROFILE_KEY = pytest.StashKey[Profile]()
PROBER_KEY = pytest.StashKey[Prober]()
TARGET_KEY = pytest.StashKey[Target]()
EVIDENCE_KEY = pytest.StashKey[Evidence]()
WAIVERS_KEY = pytest.StashKey[tuple[Waiver, ...]]()
RESULT_SCHEMA = "GatesCheckResult.v1"
SETS_ENV = "GATES_SETS_JSON"
FREE_TEXT = ("message", "observed", "expected", "remediation")  # ids and titles are never rewritten
REFUSED_REMEDIATION = (
    "Nothing accepts connections where {name} must listen: start it (systemctl start {unit}) and check "
    "its bind address and port against the profile."
)
ERROR_REMEDIATION = {
    "probe_unreachable": "Could not reach {name}: check that it runs and listens where the profile says, "
    "and that the target is reachable.",
    "probe_timeout": "{name} accepted the connection but did not answer in time: look for a hang or overload.",
    "probe_response_too_large": "{name} answered with far more data than the size cap: check what serves it.",
    "probe_protocol_error": "What answers for {name} does not speak the expected protocol: check what listens there.",
    "probe_tls_error": "The TLS handshake with {name} failed: check its certificate (name, chain, expiry); for a "
    "private CA give its certificate as the profile's probe.caFile.",
    "no_systemd": "This host runs no systemd: certify it with the profile's processManager set to none, or run "
    "the services under systemd as the profile declares.",
    "spend_not_allowed": "Re-run with --allow-spend-cents covering the amount the message names.",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the plugin's options."""
    group = parser.getgroup("gates", "certify a live deployment against a profile")
    group.addoption(
        "--gates-profile", metavar="NAME|PATH", help="Built-in profile name or path to a profile YAML."
    )
    group.addoption(
        "--gates-set",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="Override a profile variable (repeatable).",
    )
    group.addoption(
        "--gates-target",
        metavar="URL",
        default="local",
        help="How to reach the host: 'local' (default), 'ssh://user@host[:port]' or 'netns://NAME'.",
    )
    group.addoption("--gates-results", metavar="PATH", help="Write one JSON line per check instance here.")
    group.addoption(
        "--gates-allow-drills",
        action="store_true",
        help="Run drill checks, which change the target and restore it (default: they are deselected).",
    )
    group.addoption(
        "--gates-allow-spend-cents",
        metavar="N",
        type=_cents,
        default=None,
        help="Run checks that pay (a paid tool call), paying no offer above N cents (default: they are deselected).",
    )
    group.addoption(
        "--gates-evidence",
        metavar="DIR",
        default=None,
        help="Write evidence bundles (e.g. paid-call/<gateId>/) under DIR.",
    )
    group.addoption(
        "--gates-waivers",
        metavar="PATH",
        default=None,
        help="A waivers file (schemas/waivers.schema.json): a failing check a live waiver covers is reported waived.",
    )
    group.addoption(
        "--gates-only",
        metavar="ID,ID",
        default="",
        help="Run only these check ids (comma-separated); the others are deselected.",
    )


def _cents(value: str) -> int:
    if not value.strip().isdigit():
        raise pytest.UsageError(f"--gates-allow-spend-cents expects a whole number of cents, got {value!r}")
    return int(value)


def pytest_configure(config: pytest.Config) -> None:
    """Load the profile once; a bad profile is a usage error, never a traceback."""
    config.addinivalue_line("markers", "gates_check(id): the stable check id of a conformance test")
    name = config.getoption("gates_profile")
    if not name:
        return
    # Probe threads spawn commands concurrently; vfork() from a threaded process under an
    # address-space limit has been seen to fail exec with EFAULT, so use fork/exec.
    subprocess._USE_VFORK = False  # type: ignore[misc]  # the documented kill switch (CPython 3.11+)
    try:
        extra = json.loads(
            os.environ.get(SETS_ENV, "[]")
        )  # how `gates run` passes --set without argv exposure
        profile = load_profile(name, parse_sets([*extra, *config.getoption("gates_set")]))
        target = make_target(
            config.getoption("gates_target"),
            endpoints=_endpoints(profile),
            connect_timeout=profile.probe.connect_timeout_s,
        )
        waivers_file = config.getoption("gates_waivers")
        waivers = load_waivers(Path(waivers_file), load_suite()) if waivers_file else ()
    except ConfigError as exc:
        raise pytest.UsageError(exc.render()) from exc
    config.stash[WAIVERS_KEY] = waivers
    if config.getoption("gates_allow_spend_cents") is not None and getattr(
        config.option, "numprocesses", None
    ):
        raise pytest.UsageError(
            "--gates-allow-spend-cents cannot be combined with -n: each worker would make (and pay for) its own call"
        )
    config.stash[PROFILE_KEY] = profile
    config.stash[TARGET_KEY] = target
    evidence = config.getoption("gates_evidence")
    context = Context(
        settings=profile.probe,
        host=target.host,
        dial=target.dial,
        spend_cap_cents=config.getoption("gates_allow_spend_cents"),
        evidence_dir=Path(evidence) if evidence and not hasattr(config, "workerinput") else None,
        secrets=profile.secrets(),
    )
    prober = Prober(context)
    config.stash[PROBER_KEY] = prober
    _prefetch(profile, prober, _only(config), spend=context.spend_cap_cents is not None)
    results = config.getoption("gates_results")
    if results and not hasattr(config, "workerinput"):
        writer = ResultWriter(Path(results), Redactor(profile.secrets()))
        config.pluginmanager.register(writer, "gates-result-writer")


def _only(config: pytest.Config) -> set[str]:
    return {x for x in str(config.getoption("gates_only") or "").split(",") if x}


def _endpoints(profile: Profile) -> list[tuple[str, int]]:
    """Every endpoint the checks dial: listening services, the URLs services are reached by, and the
    URLs of the paid calls."""
    out = [(s.bind, s.port) for s in profile.services if s.listens]
    urls = [s.url for s in profile.services if s.url is not None]
    urls += [u for call in profile.paid_calls for u in (call.gateway, call.api, call.provider_keyset)]
    out += [url_endpoint(url) for url in urls]
    return sorted(set(out))


def _prefetch(profile: Profile, prober: Prober, only: set[str], *, spend: bool) -> None:
    """Start every probe the selected checks need before collection, so probing overlaps with it."""
    for spec in load_suite().values():
        if spec.drill:
            continue  # a drill changes the target: it starts only after every other check has finished
        if spec.spends and not spend:
            continue  # never pay unless the run allows it
        if not only or spec.id in only:
            for target in spec.targets(profile):
                resolve(spec.observe(profile, target), prober.submit, wait=False)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop probe threads."""
    prober = config.stash.get(PROBER_KEY, None)
    if prober is not None:
        prober.close()
    target = config.stash.get(TARGET_KEY, None)
    if target is not None:
        target.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize each check over the profile's targets."""
    spec = spec_of(metafunc.function)
    if spec is None or "target" not in metafunc.fixturenames:
        return
    profile = metafunc.config.stash.get(PROFILE_KEY, None)
    targets = list(spec.targets(profile)) if profile is not None else []
    if not targets:
        skip = pytest.mark.skip(reason=f"the profile declares no target for {spec.id}")
        metafunc.parametrize("target", [pytest.param(None, marks=skip)], ids=["no-target"])
        return
    metafunc.parametrize("target", targets, ids=[t.name for t in targets])


def _spec_and_target(item: pytest.Item) -> tuple[CheckSpec, Any] | None:
    spec = spec_of(getattr(item, "function", None))
    callspec = getattr(item, "callspec", None)
    if spec is None or callspec is None or "target" not in callspec.params:
        return None
    target = callspec.params["target"]
    if target is None:
        return None  # the placeholder of a check with no target in this profile
    return spec, target


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect checks outside ``--gates-only``, drills unless allowed and checks that pay unless a spend is
    allowed; drills run last."""
    only = _only(config)
    allow_drills = bool(config.getoption("gates_allow_drills"))
    allow_spend = config.getoption("gates_allow_spend_cents") is not None
    keep: list[pytest.Item] = []
    drills: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        spec = spec_of(getattr(item, "function", None))
        if spec is None:
            keep.append(item)  # not a check: the plugin leaves other tests alone
        elif (
            (only and spec.id not in only)
            or (spec.drill and not allow_drills)
            or (spec.spends and not allow_spend)
        ):
            drop.append(item)
        else:
            (drills if spec.drill else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = [*keep, *drills]


@pytest.fixture
def profile(request: pytest.FixtureRequest) -> Profile:
    """The resolved deployment profile under test."""
    found = request.config.stash.get(PROFILE_KEY, None)
    if found is None:
        pytest.skip("no --gates-profile given")
    return found


@pytest.fixture
def obs(request: pytest.FixtureRequest, profile: Profile) -> Any:
    """The observation(s) the check declared, taken once and shared; a probe that cannot observe errors."""
    found = _spec_and_target(request.node)
    if found is None:
        raise pytest.UsageError(f"{request.node.nodeid} uses 'obs' but is not a registered check")
    spec, target = found
    prober = request.config.stash[PROBER_KEY]
    return resolve(spec.observe(profile, target), prober.submit, wait=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Collect what `expect` compared while the check runs."""
    evidence = Evidence()
    item.stash[EVIDENCE_KEY] = evidence
    token = CURRENT_EVIDENCE.set(evidence)
    try:
        return (yield)
    finally:
        CURRENT_EVIDENCE.reset(token)


def _render(template: str, target: Any) -> str:
    if not getattr(
        target, "unit", None
    ):  # no unit: drop the "(systemctl ... {unit})" hints rather than leave them empty
        template = re.sub(r"\s*\([^()]*\{unit\}[^()]*\)", "", template)
    fields = {
        name: getattr(target, name, "")
        for name in ("name", "unit", "service", "port", "bind", "path", "host", "upstream", "worktree")
    }
    fields = {k: ("" if v is None else v) for k, v in fields.items()}
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError):
        return template


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport | None:
    """Report a check's outcome as pass/fail/error/skip with reason and remediation.

    The report is built here, with a one-paragraph message instead of a traceback: a
    non-conformance is a finding about the deployment, not a bug in the suite.
    """
    found = _spec_and_target(item)
    if found is None or item.config.stash.get(PROFILE_KEY, None) is None:
        return None
    when = call.when
    if when not in ("setup", "call") or (when == "setup" and call.excinfo is None):
        return None
    spec, target = found
    record: dict[str, Any] = {
        "$type": "check_result",
        "schemaVersion": RESULT_SCHEMA,
        "id": instance_id(spec.id, target.name),
        "check": spec.id,
        "target": target.name,
        "title": spec.title,
        "severity": spec.severity,
        "nodeid": item.nodeid,
        "durationSeconds": round(call.duration, 6),
        "observed": None,
        "expected": None,
        "remediation": None,
    }
    exc = call.excinfo.value if call.excinfo is not None else None
    if isinstance(exc, pytest.skip.Exception):
        record.update(outcome="skip", reasonCode="skipped", message=str(exc.msg))
    elif isinstance(exc, CheckFailed):
        record.update(
            outcome="fail",
            reasonCode=exc.reason,
            message=exc.message,
            observed=exc.observed,
            expected=exc.expected,
            remediation=exc.remediation or _render(spec.remediation, target),
        )
    elif isinstance(exc, ConnectionRefused):  # observed: nothing listens where the profile says
        record.update(
            outcome="fail",
            reasonCode=exc.reason_code,
            message=str(exc),
            observed={"endpoint": exc.endpoint, "connection": "refused"},
            expected={"endpoint": exc.endpoint, "connection": "accepted"},
            remediation=_render(REFUSED_REMEDIATION, target),
        )
    elif isinstance(exc, ProbeError):
        hint = ERROR_REMEDIATION.get(exc.reason_code)
        record.update(
            outcome="error",
            reasonCode=exc.reason_code,
            message=str(exc),
            remediation=_render(hint, target) if hint else None,
        )
    elif isinstance(exc, AssertionError):
        first = str(exc).splitlines()[0] if str(exc) else "assertion failed"
        record.update(
            outcome="fail",
            reasonCode="assertion_failed",
            message=first,
            remediation=_render(spec.remediation, target),
        )
    elif exc is not None:
        record.update(
            outcome="error",
            reasonCode="check_crashed",
            message=f"the check itself raised {type(exc).__name__}: {exc}",
        )
    else:
        items = item.stash.get(EVIDENCE_KEY, Evidence()).items
        last = items[-1] if items else {}
        record.update(
            outcome="pass",
            reasonCode=None,
            message="conforms",
            observed=last.get("observed"),
            expected=last.get("expected"),
        )
    waiver = None
    if record["outcome"] == "fail":  # never an error: a waiver accepts a finding, not a blind spot
        waivers: tuple[Waiver, ...] = item.config.stash.get(WAIVERS_KEY, ())
        waiver = live_waiver(waivers, record["id"], clock.now().date())
        if waiver is not None:
            record.update(outcome="waived", waiver=waiver.to_json())
    longrepr: Any = None
    outcome: Literal["passed", "failed", "skipped"] = "passed"
    if record["outcome"] == "skip":
        outcome = "skipped"
        longrepr = (str(item.path), (item.location[1] or 0) + 1, f"Skipped: {record['message']}")
    elif record["outcome"] in ("fail", "error"):
        outcome = "failed"
        lines = [f"{record['id']}: {record['outcome']}: {record['message']}"]
        if record["outcome"] == "fail":
            lines.append(f"  observed: {json.dumps(_jsonable(record['observed']))}")
            lines.append(f"  expected: {json.dumps(_jsonable(record['expected']))}")
        if record["remediation"]:
            lines.append(f"  fix: {record['remediation']}")
        longrepr = "\n".join(lines)
    elif waiver is not None:  # JUnit and pytest-html show it as an accepted (expected) failure
        outcome = "skipped"
        longrepr = (str(item.path), (item.location[1] or 0) + 1, f"{record['id']}: fail: {record['message']}")
    report = pytest.TestReport(
        nodeid=item.nodeid,
        location=item.location,
        keywords=dict.fromkeys(item.keywords, 1),
        outcome=outcome,
        longrepr=longrepr,
        when=when,
        sections=[],
        duration=call.duration,
        start=call.start,
        stop=call.stop,
        user_properties=[*item.user_properties, ("gates_result", json.dumps(_jsonable(record)))],
    )
    if waiver is not None:
        report.wasxfail = (
            f"waived by {waiver.approver} until {waiver.expires.isoformat()}: {waiver.reason} "
            f"({record['id']}: {record['message']})"
        )
    return report


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=json.dumps) if isinstance(value, set | frozenset) else items
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


class ResultWriter:
    """Streams check results as NDJSON, one flushed line each, secrets scrubbed (controller only)."""

    def __init__(self, path: Path, redactor: Redactor) -> None:
        self.path = path
        self.redactor = redactor
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("w", encoding="utf-8", buffering=1)
        self._started = time.monotonic()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Write the result a check report carries."""
        for key, value in report.user_properties:
            if key == "gates_result":
                record = json.loads(str(value))
                for field in FREE_TEXT:
                    record[field] = self.redactor.scrub(record.get(field))
                self._file.write(json.dumps(record, sort_keys=True) + "\n")
                self._file.flush()

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Close the stream."""
        self._file.close()
