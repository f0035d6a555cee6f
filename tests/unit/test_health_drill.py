"""The health-dependency drill: its declaration, how an answer is judged green, and the drill on real processes.

The drill tests run real local processes (a dependency, a health endpoint that asks it, one that does not) and
the real freeze and command methods; nothing is mocked and nothing is timed: only which answers noticed and what
the snapshots show are asserted.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conformance import _schemas
from conformance.checks import catalog
from conformance.errors import ConfigError
from conformance.probes.base import Context
from conformance.probes.bounded import BoundedHost
from conformance.probes.healthdrill import (
    GREEN,
    Answer,
    DependencySpec,
    DependentSpec,
    HealthDependencyDrill,
    classify,
    differences,
)
from conformance.probes.http import HttpResponse
from conformance.profile import HttpExpectation, ProbeSettings, load_profile
from conformance.targets import make_host

BASE = """\
schemaVersion: gates.profile/v1
name: drilled
variables:
  disposable: {default: "true"}
services:
  - {name: db, kind: postgres, bind: 127.0.0.1, port: 5432, database: d, dbUser: u}
  - {name: api, kind: http, bind: 127.0.0.1, port: 8000, health: {path: /health, status: 200}}
  - {name: proxy, kind: proxy, bind: 127.0.0.1, port: 8088}
  - {name: loop, kind: process}
routes:
  proxy: proxy
  hosts: [{host: api.example.com, upstream: api}]
"""


def profile_with(tmp_path: Path, drill: str, overrides: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "profile.yaml"
    path.write_text(BASE + textwrap.dedent(drill), encoding="utf-8")
    return load_profile(str(path), overrides)


def load_error(tmp_path: Path, drill: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        profile_with(tmp_path, drill)
    return info.value


GOOD = """\
healthDrill:
  disposable: ${disposable}
  boundSeconds: 7
  dependencies:
    - {service: db, method: unit, unit: postgresql.service, dependents: [{service: api, boundSeconds: 3}]}
    - {service: api, method: freeze, dependents: [{route: api}]}
"""


class TestDeclaration:
    """``healthDrill`` as a profile declares it."""

    def test_pairs_and_bounds(self, tmp_path: Path) -> None:
        drill = profile_with(tmp_path, GOOD).health_drill
        assert drill is not None
        assert drill.disposable
        assert [(p.name, p.dependent.bound_s) for p in drill.pairs()] == [("api:db", 3), ("route/api:api", 7)]
        assert drill.dependencies[0].unit == "postgresql.service"

    def test_targets_only_on_a_disposable_deployment(self, tmp_path: Path) -> None:
        ids = [
            i.id for i in catalog(profile_with(tmp_path, GOOD)) if i.check.startswith("health.dependency.")
        ]
        assert ids == [
            "health.dependency.noticed[api:db]",
            "health.dependency.noticed[route/api:api]",
            "health.dependency.restored[api]",
            "health.dependency.restored[db]",
        ]
        kept = profile_with(tmp_path, GOOD, {"disposable": "false"})
        assert not [i for i in catalog(kept) if i.check.startswith("health.dependency.")]

    def test_builtin_profiles_declare_it_and_stay_safe_by_default(self) -> None:
        """Both built-in profiles declare their dependencies; neither is disposable unless the operator says so."""
        for name, pairs in (
            ("oroboros", ["api:postgres", "worker:postgres", "route/api:api"]),
            ("nooterra", ["api:postgres"]),
        ):
            profile = load_profile(name, environ={})
            assert profile.health_drill is not None
            assert not profile.health_drill.disposable
            assert [p.name for p in profile.health_drill.pairs()] == pairs
            assert not [i for i in catalog(profile) if i.check.startswith("health.dependency.")]

    @pytest.mark.parametrize(
        ("drill", "says", "where"),
        [
            ("  disposable: maybe\n  dependencies: []\n", "disposable must be true or false", "(healthDrill.disposable)"),
            ("  dependencies:\n    - {service: nope, method: freeze, dependents: [{service: api}]}\n",
             "'nope' is not a declared service", "(healthDrill.dependencies[0].service)"),
            ("  dependencies:\n    - {service: db, method: kill, dependents: [{service: api}]}\n",
             "method must be one of unit, command, freeze", "(healthDrill.dependencies[0].method)"),
            ("  dependencies:\n    - {service: db, method: unit, dependents: [{service: api}]}\n",
             "method unit needs unit", "(healthDrill.dependencies[0].unit)"),
            ("  dependencies:\n    - {service: db, method: command, stop: x, dependents: [{service: api}]}\n",
             "method command needs start", "(healthDrill.dependencies[0].start)"),
            ("  dependencies:\n    - {service: loop, method: freeze, dependents: [{service: api}]}\n",
             "freeze needs the port", "(healthDrill.dependencies[0].method)"),
            ("  dependencies:\n    - {service: db, method: freeze, dependents: [{service: proxy}]}\n",
             "not a declared http service with a health answer", "(healthDrill.dependencies[0].dependents[0].service)"),
            ("  dependencies:\n    - {service: db, method: freeze, dependents: [{route: www}]}\n",
             "'www' is not a declared route", "(healthDrill.dependencies[0].dependents[0].route)"),
            ("  dependencies:\n    - {service: db, method: freeze, dependents: [{}]}\n",
             "exactly one of service or route", "(healthDrill.dependencies[0].dependents[0])"),
            ("  dependencies:\n    - {service: api, method: freeze, dependents: [{service: api}]}\n",
             "cannot depend on itself", "(healthDrill.dependencies[0].dependents[0].service)"),
        ],
    )  # fmt: skip
    def test_a_bad_declaration_is_located(self, tmp_path: Path, drill: str, says: str, where: str) -> None:
        err = load_error(tmp_path, "healthDrill:\n" + drill)
        assert says in err.render()
        assert where in err.render()


def _resp(status: int, body: bytes) -> HttpResponse:
    return HttpResponse(
        url="http://x/health", host_header=None, status=status, headers=(), body=body, elapsed_s=0.0
    )


class TestClassify:
    """An answer is green only when it is the declared healthy one; otherwise a stable word says how it is not."""

    def test_green_and_not(self) -> None:
        want = HttpExpectation(method="GET", path="/healthz", status=200, body=None, content_type=None,
                               json=(("ok", True), ("dbOk", True)))  # fmt: skip
        assert classify(_resp(200, b'{"ok":true,"dbOk":true,"dbLatencyMs":3}'), None, want) == GREEN
        assert classify(_resp(503, b'{"ok":false,"dbOk":false}'), None, want) == "status 503"
        assert classify(_resp(200, b'{"ok":true,"dbOk":false}'), None, want) == "dbOk is false"
        assert classify(_resp(200, b'{"ok":true,"dbOk":1}'), None, want) == "dbOk is 1"
        assert classify(_resp(200, b"ok"), None, want) == "body is not JSON"
        assert classify(None, "timeout", want) == "no answer (timeout)"

    def test_exact_body(self) -> None:
        want = HttpExpectation(method="GET", path="/health", status=200, body="ok\n", content_type=None)
        assert classify(_resp(200, b"ok\n"), None, want) == GREEN
        assert classify(_resp(200, b"ok"), None, want) == "body differs"

    def test_differences_name_what_changed_never_pids(self) -> None:
        before = {
            "health": {"a": GREEN},
            "listening": {"a": True},
            "dependency": "running",
            "processes": {"a": ["1"]},
        }
        after = {"health": {"a": "status 502"}, "listening": {"a": True}, "dependency": "running",
                 "processes": {"a": ["2"]}}  # fmt: skip
        assert differences(before, after) == [
            "health a: green -> status 502",
            "processes a: replaced (another process listens)",
        ]
        assert differences(before, before) == []


# --- the drill on real local processes --------------------------------------------------------------------------

_DEPENDENT = """
import sys, urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
port, dep = int(sys.argv[1]), sys.argv[2]
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        ok = True
        if dep != "-":
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{dep}/", timeout=0.5).read()
            except Exception:
                ok = False
        body = b"ok\\n" if ok else b"down\\n"
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int) -> None:
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[dict[str, int]]:
    """A dependency, a health answer that asks it (``checks``) and one that does not (``vacuous``)."""
    ports = {"dep": _free_port(), "checks": _free_port(), "vacuous": _free_port()}
    script = tmp_path / "dependent.py"
    script.write_text(_DEPENDENT, encoding="utf-8")
    procs = [
        subprocess.Popen([sys.executable, "-m", "http.server", str(ports["dep"]), "--bind", "127.0.0.1"],
                         cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, str(script), str(ports["checks"]), str(ports["dep"])]),
        subprocess.Popen([sys.executable, str(script), str(ports["vacuous"]), "-"]),
    ]  # fmt: skip
    try:
        for port in ports.values():
            _wait_listening(port)
        yield ports
    finally:
        for p in procs:
            subprocess.run(["kill", "-CONT", str(p.pid)], check=False)
            p.kill()
            p.wait()
        for port in ports.values():  # whatever a put-back step started in their place
            if _pids(port):
                subprocess.run(["kill", "-KILL", *_pids(port)], check=False)


def _drill(
    ports: dict[str, int],
    method: str,
    *,
    stop: str = "",
    start: str = "",
    vacuous_s: int = 1,
    margin_s: int = 30,
    timeout_s: int = 20,
) -> HealthDependencyDrill:
    want = HttpExpectation(method="GET", path="/health", status=200, body="ok\n", content_type=None)
    answers = tuple(
        Answer(name=n, address="127.0.0.1", port=ports[n], expect=want) for n in ("checks", "vacuous")
    )
    return HealthDependencyDrill(
        answers=answers,
        dependencies=(
            DependencySpec(
                name="dep",
                method=method,
                port=ports["dep"],
                unit="",
                stop=stop,
                start=start,
                dependents=(
                    DependentSpec(answer="checks", bound_s=5),
                    DependentSpec(answer="vacuous", bound_s=vacuous_s),
                ),
            ),
        ),
        listeners=tuple(ports.items()),
        restore_s=5,
        interval_ms=100,
        timeout_s=timeout_s,
        watchdog_margin_s=margin_s,
    )


def _ctx(tmp_path: Path, *, bounded: bool = False) -> Context:
    """``bounded``: the host wrapped as in a real run, whose stderr filter is a descriptor the drill's switch must
    not keep open (the put-back commands of the other tests start servers that keep theirs, as such commands may)."""
    settings = ProbeSettings(connect_timeout_s=1.0, read_timeout_s=2.0, deadline_s=2.0)
    host = BoundedHost(make_host("local")) if bounded else make_host("local")
    return Context(settings=settings, host=host, evidence_dir=tmp_path / "evidence")


class TestDrill:
    """The drill on real processes: what noticed, what did not, and whether all came back."""

    def test_freeze_notices_the_real_dependency_and_names_the_vacuous_one(
        self, deployment: dict[str, int], tmp_path: Path
    ) -> None:
        record = _drill(deployment, "freeze").observe(_ctx(tmp_path))
        rec = record.dependency("dep")
        assert rec["takeAway"]["exitCode"] == 0
        assert rec["noticed"] == {
            "checks": {"answer": "status 503", "noticed": True},
            "vacuous": {"answer": GREEN, "noticed": False},
        }
        assert rec["putBack"]["exitCode"] == 0
        assert rec["differences"] == []
        assert set(rec["greenAgain"].values()) == {GREEN}
        assert rec["before"]["dependency"] == rec["after"]["dependency"] == "running"
        assert "processes" not in rec["before"]  # pids vary from run to run: never reported
        timings = json.loads((tmp_path / "evidence" / "health-drill" / "timings.json").read_text())
        _schemas.validate(timings, "health-drill-timings", source="timings.json")
        assert timings["dependencies"]["dep"]["noticedMs"]["vacuous"] is None
        assert timings["dependencies"]["dep"]["noticedMs"]["checks"] is not None

    def test_a_put_back_that_brings_back_less_is_a_difference(
        self, deployment: dict[str, int], tmp_path: Path
    ) -> None:
        stop = f"kill $(ss -Hltnp 'sport = :{deployment['dep']}' | grep -o 'pid=[0-9]*' | cut -d= -f2)"
        rec = _drill(deployment, "command", stop=stop, start="true").observe(_ctx(tmp_path)).dependency("dep")
        assert rec["noticed"]["checks"]["noticed"] is True
        assert rec["putBack"]["exitCode"] == 0
        assert rec["greenAgain"]["checks"] == "status 503"
        assert rec["differences"] == [
            "health checks: green -> status 503",
            "listening dep: True -> False",
            "dependency: listening -> not listening",
        ]

    def test_a_restarted_dependency_is_as_found_a_restarted_dependent_is_not(
        self, deployment: dict[str, int], tmp_path: Path
    ) -> None:
        """Stopped and started, the dependency is another process afterwards, as it must be; a dependent that
        the put-back step restarted too is reported replaced, though it answers green again."""
        dep, vac = deployment["dep"], deployment["vacuous"]
        kill = "kill $(ss -Hltnp 'sport = :{0}' | grep -o 'pid=[0-9]*' | cut -d= -f2)"
        serve = f"setsid {sys.executable} -m http.server {dep} --bind 127.0.0.1 >/dev/null 2>&1 </dev/null &"
        wait = (
            "(for i in $(seq 100); do ss -Hltn 'sport = :{0}' | grep -q . && exit 0; sleep 0.1; done; exit 1)"
        )
        start = f"{serve} {wait.format(dep)}"
        rec = _drill(deployment, "command", stop=kill.format(dep), start=start).observe(_ctx(tmp_path))
        assert rec.dependency("dep")["putBack"]["exitCode"] == 0
        assert rec.dependency("dep")["differences"] == []
        script = tmp_path / "dependent.py"
        closed = f"while ss -Hltn 'sport = :{vac}' | grep -q .; do sleep 0.1; done"
        again = f"{kill.format(vac)}; {closed}; setsid {sys.executable} {script} {vac} - >/dev/null 2>&1 </dev/null &"
        again += f" {wait.format(vac)}"
        rec = _drill(deployment, "command", stop=kill.format(dep), start=f"{start} && {again}").observe(
            _ctx(tmp_path)
        )
        assert rec.dependency("dep")["differences"] == [
            "processes vacuous: replaced (another process listens)"
        ]
        assert set(rec.dependency("dep")["greenAgain"].values()) == {GREEN}

    def test_the_switch_is_disarmed_when_the_drill_puts_back_itself(
        self, deployment: dict[str, int], tmp_path: Path
    ) -> None:
        rec = _drill(deployment, "freeze").observe(_ctx(tmp_path, bounded=True)).dependency("dep")
        assert rec["watchdog"] == {"afterSeconds": 20 + 5 + 2 + 30, "state": "disarmed"}
        assert _watchdogs(deployment["dep"]) == []

    def test_a_drill_killed_mid_freeze_leaves_the_dependency_frozen_only_until_the_switch_fires(
        self, deployment: dict[str, int], tmp_path: Path
    ) -> None:
        """The run dies while the dependency is frozen (the vacuous answer's bound holds the drill there): the
        switch armed on the target sends SIGCONT itself, and nothing of it remains."""
        drill = _drill(
            deployment, "freeze", vacuous_s=12, margin_s=1, timeout_s=2
        )  # the switch fires after 17 s
        run = multiprocessing.get_context("fork").Process(
            target=drill.observe, args=(_ctx(tmp_path, bounded=True),)
        )
        run.start()
        try:
            assert _until(lambda: _state(deployment["dep"]) == "stopped", 30), "the drill never froze dep"
        finally:
            run.kill()
            run.join()
        assert _watchdogs(deployment["dep"]) != []  # the switch outlives the run that armed it
        assert _until(lambda: _state(deployment["dep"]) == "running", 60), "dep stayed frozen"
        assert _until(lambda: _watchdogs(deployment["dep"]) == [], 30)

    def test_nothing_is_taken_away_from_a_deployment_that_is_not_green(
        self, deployment: dict[str, int], tmp_path: Path
    ) -> None:
        subprocess.run(["kill", "-STOP", *_pids(deployment["dep"])], check=True)
        try:
            rec = _drill(deployment, "freeze").observe(_ctx(tmp_path)).dependency("dep")
        finally:
            subprocess.run(["kill", "-CONT", *_pids(deployment["dep"])], check=True)
        assert rec["refused"].startswith("health not green before the drill")
        assert "takeAway" not in rec


def _pids(port: int) -> list[str]:
    out = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return sorted(set(re.findall(r"pid=(\d+)", out)))


def _state(port: int) -> str:
    """``stopped`` when a process listening on ``port`` is stopped (state T), else ``running``."""
    stats = [
        subprocess.run(["ps", "-o", "stat=", "-p", pid], capture_output=True, text=True).stdout
        for pid in _pids(port)
    ]
    return "stopped" if any(s.strip().startswith("T") for s in stats) else "running"


def _watchdogs(port: int) -> list[str]:
    """The pids of the drill's switches alive on this machine that would thaw what listens on ``port``."""
    pattern = f"gates-health-drill-watchdog-[0-9a-f]+ .* gates-freeze {port} CONT"
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()


def _until(condition: Callable[[], bool], within_s: float) -> bool:
    """Whether ``condition`` holds within ``within_s`` seconds (asked every 0.1 s)."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
