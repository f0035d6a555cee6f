"""`gates init` on a small real deployment in its own network namespace: PostgreSQL, Redis, Caddy and two
HTTP backends on loopback, no service manager. The profile it writes validates and certifies that
deployment green, and stopping a backend afterwards makes the same profile fail."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conformance.profile import load_profile
from fixtures import netns, postgres
from fixtures.procs import Proc, spawn, stop
from fixtures.state import default_state_dir
from gates.testing import not_passing, run_cli

PG_PASSWORD = "init-loopback-pg-7f3a"
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
_missing = [t for t in ("caddy", "redis-server", "ip", "setpriv") if shutil.which(t) is None]
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or bool(_missing),
    reason=f"a network namespace needs root, and {', '.join(_missing) or 'its tools'} (make bootstrap installs them)",
)

BACKEND = r"""import http.server, sys
name = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body, kind = ((b"ok\n", "text/plain") if self.path == "/health" else (f"backend {name}".encode(), "text/html"))
        self.send_response(200); self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""

CADDYFILE = """{
    admin off
    auto_https off
    default_bind 127.0.0.1
}

# a site block per host
http://app.example.test:8088 {
    reverse_proxy 127.0.0.1:9001
}

# a host matcher in a catch-all site, which refuses every other host
:8088 {
    @api host api.example.test
    handle @api {
        reverse_proxy 127.0.0.1:9002
    }
    handle {
        respond "no such site" 404
    }
}
"""


@dataclass
class Deployment:
    """The namespace and what runs in it."""

    name: str
    procs: dict[str, Proc]


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    """PostgreSQL 5432, Redis 6379, Caddy 8088 routing two hosts to backends on 9001 and 9002."""
    root = default_state_dir(f"selftest-{WORKER}-init-loopback")  # readable by the postgres user
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    name = f"gates-init-{uuid.uuid4().hex[:8]}"
    netns.create(name)
    procs: dict[str, Proc] = {}
    try:
        postgres.clone(postgres.template(["app"], PG_PASSWORD), root / "pg")
        procs["postgres"] = postgres.start(root / "pg", port=5432, log=root / "pg.log", netns=name)
        (root / "redis").mkdir()
        redis = ["redis-server", "--port", "6379", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(root / "redis"), "--daemonize", "no"]  # fmt: skip
        procs["redis"] = spawn("redis", netns.wrap(name, redis), log=root / "redis.log")
        (root / "backend.py").write_text(BACKEND)
        for port, label in ((9001, "app"), (9002, "api")):
            argv = netns.wrap(name, [sys.executable, str(root / "backend.py"), str(port), label])
            procs[label] = spawn(label, argv, log=root / f"{label}.log")
        (root / "Caddyfile").write_text(CADDYFILE)
        env = {
            **os.environ,
            "HOME": str(root),
            "XDG_DATA_HOME": str(root / "data"),
            "XDG_CONFIG_HOME": str(root),
        }
        caddy = ["caddy", "run", "--config", str(root / "Caddyfile"), "--adapter", "caddyfile"]
        procs["caddy"] = spawn("caddy", netns.wrap(name, caddy), log=root / "caddy.log", env=env)
        for port, label in ((6379, "redis"), (9001, "app"), (9002, "api"), (8088, "caddy")):
            netns.wait_port(name, port, proc=procs[label], timeout_s=30, log=root / f"{label}.log")
        yield Deployment(name=name, procs=procs)
    finally:
        for proc in procs.values():
            stop(proc)
        netns.delete(name)
        shutil.rmtree(root, ignore_errors=True)


def test_init_writes_a_profile_that_certifies_the_deployment(
    deployment: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The profile validates, declares what runs there with its routes, and `gates run` with it exits 0."""
    target = f"netns://{deployment.name}"
    code, text, err = run_cli("init", "--target", target, "--name", "loopback")
    assert code == 0, err
    path = tmp_path / "loopback.yaml"
    path.write_text(text)
    profile = load_profile(str(path), environ={})
    kinds = {s.name: (s.kind, s.bind, s.port) for s in profile.services}
    assert kinds["postgres"] == ("postgres", "127.0.0.1", 5432)
    assert kinds["redis"] == ("redis", "127.0.0.1", 6379)
    assert kinds["reverse-proxy"] == ("proxy", "127.0.0.1", 8088)
    assert profile.process_manager == "none"
    assert profile.routes is not None
    upstreams = {r.host: profile.service(r.upstream).port for r in profile.routes.hosts}
    assert upstreams == {"app.example.test": 9001, "api.example.test": 9002}
    assert (profile.routes.unknown_status, profile.routes.unknown_body) == (404, "no such site")
    health = {s.port: s.health for s in profile.services if s.health is not None}
    assert {p: (h.path, h.status, h.body, h.content_type) for p, h in health.items()} == {
        9001: ("/health", 200, "ok\n", "text/plain"),
        9002: ("/health", 200, "ok\n", "text/plain"),
    }
    assert PG_PASSWORD not in text
    assert "gates-init" not in yaml.safe_load(text)["name"]
    assert yaml.safe_load(text)["gates"][0] == "host-inventory"

    monkeypatch.setenv("GATES_POSTGRES_PASSWORD", PG_PASSWORD)
    out = tmp_path / "run"
    code, stdout, _ = run_cli("run", "--profile", str(path), "--target", target, "--out", str(out), "--quiet")
    assert code == 0, stdout
    assert not_passing(out) == {}
    assert PG_PASSWORD not in "".join(p.read_text() for p in (out / "gates").glob("*.json"))

    stop(deployment.procs.pop("api"))  # the same profile now sees the api backend gone
    out = tmp_path / "run-stopped"
    code, stdout, _ = run_cli("run", "--profile", str(path), "--target", target, "--out", str(out), "--quiet")
    assert code == 1, stdout
    api = next(s.name for s in profile.services if s.port == 9002)
    assert not_passing(out) == {
        **{f"{c}[{api}]": "fail" for c in ("health.http.status_exact", "health.http.body_exact",
                                           "health.http.content_type", "topology.listen.port_bound")},
        f"topology.listen.runs_as[{api}]": "error",  # nothing listens: whose process it is cannot be read
        "health.route.health_exact[api]": "fail",
        "proxy.route.upstream_identity[api]": "fail",
    }  # fmt: skip
