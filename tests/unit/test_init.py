"""`gates init`'s pieces: Caddyfile routes, unit files, and the profile drafted from an inventory."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from conformance.init.caddyfile import CaddyRoute, config_path, parse_caddyfile, upstream_endpoint
from conformance.init.draft import Drafter, key, name_of, q, seconds
from conformance.init.observe import Answer, Inventory, Socket, Unit
from conformance.init.render import document, sections
from conformance.init.unitfile import parse_unit
from conformance.probes.files import PathState
from conformance.probes.http import HttpResponse
from conformance.probes.systemd import ProcessInfo, UnitInfo
from conformance.profile import load_profile
from conformance.targets import forward_spec
from gates.testing import run_cli

UPSTREAM_STYLE = """{
    auto_https off
}

:8088 {
    @app host app.example.com
    handle @app {
        reverse_proxy 127.0.0.1:3100
    }
    @api {
        host api.example.com  # the api
    }
    handle @api {
        reverse_proxy http://localhost:8000
    }
    handle {
        respond "unknown host" 404
    }
}
"""

SITE_STYLE = """# sites
app.example.com, http://www.example.com:8088 {
    encode gzip
    reverse_proxy 127.0.0.1:3100 127.0.0.1:3101
}
api.example.com {
    handle /v1/* {
        reverse_proxy 127.0.0.1:9999
    }
    handle {
        reverse_proxy {
            to 127.0.0.1:8000
        }
    }
}
"{$SITE}" {
    reverse_proxy {env.UPSTREAM}
}
:9000 {
    reverse_proxy @admin 127.0.0.1:7000
    @admin host admin.example.com
    respond "# not a comment {" 200
}
"""


def test_caddyfile_named_host_matchers() -> None:
    """``@name host ...`` (one line or a block) used by ``handle @name`` gives each host its upstream."""
    conf = parse_caddyfile(UPSTREAM_STYLE)
    assert conf.routes == (
        CaddyRoute(host="app.example.com", upstream_address="127.0.0.1", upstream_port=3100),
        CaddyRoute(host="api.example.com", upstream_address="127.0.0.1", upstream_port=8000),
    )
    assert conf.site_ports == (8088,)


def test_caddyfile_site_blocks() -> None:
    """Site addresses route to the block's first unmatched upstream; path handles, placeholders are skipped."""
    conf = parse_caddyfile(SITE_STYLE)
    assert {r.host: (r.upstream_address, r.upstream_port) for r in conf.routes} == {
        "app.example.com": ("127.0.0.1", 3100),
        "www.example.com": ("127.0.0.1", 3100),
        "api.example.com": ("127.0.0.1", 8000),
        "admin.example.com": ("127.0.0.1", 7000),
    }
    assert conf.site_ports == (8088, 9000)


def test_caddyfile_odd_input_finds_nothing() -> None:
    """Empty text, only a global block, or unbalanced braces give no routes, never an exception."""
    for text in ("", "{\n admin off\n}\n", "a.example.com {\n reverse_proxy\n", "}}}{{{", "@m host x\n"):
        assert parse_caddyfile(text).routes == ()


def test_upstream_endpoint_and_config_path() -> None:
    """Upstreams as Caddy writes them; the --config of a caddy command line."""
    assert upstream_endpoint(":3100") == ("127.0.0.1", 3100)
    assert upstream_endpoint("[::1]:80") == ("::1", 80)
    assert upstream_endpoint("unix//run/app.sock") is None
    assert upstream_endpoint("127.0.0.1:99999") is None
    assert (
        config_path(("caddy", "run", "--config", "/etc/x/Caddyfile", "--adapter", "caddyfile"))
        == "/etc/x/Caddyfile"
    )
    assert config_path(("caddy", "run", "--config=/c")) == "/c"
    assert config_path(("caddy", "run")) is None


UNIT = """# /etc/systemd/system/app.service
[Unit]
Description=App ; not a comment
[Service]
User=app
EnvironmentFile=/etc/app/a.env -/etc/app/optional.env
NoNewPrivileges=yes
ProtectSystem=full
ExecStart=/usr/bin/app \\
    --port 8000
# a comment
; another
[Install]
WantedBy=multi-user.target

# /etc/systemd/system/app.service.d/override.conf
[Service]
EnvironmentFile=
EnvironmentFile=/etc/app/b.env
User=app2
UMask=0077
"""


def test_unit_file_settings() -> None:
    """Drop-ins override single settings, an empty assignment resets a list, ``-`` marks an optional file."""
    unit = parse_unit(UNIT)
    assert unit.files == (
        "/etc/systemd/system/app.service",
        "/etc/systemd/system/app.service.d/override.conf",
    )
    assert unit.last("Service.User") == "app2"
    assert unit.values("Service.EnvironmentFile") == ("/etc/app/b.env",)
    assert unit.last("Service.ExecStart") == "/usr/bin/app  --port 8000"
    assert unit.hardening_keys() == ["NoNewPrivileges", "ProtectSystem", "UMask"]
    assert unit.last("Unit.Description") == "App ; not a comment"
    first = parse_unit(UNIT.split("# /etc/systemd/system/app.service.d")[0])
    assert first.values("Service.EnvironmentFile") == ("/etc/app/a.env -/etc/app/optional.env",)
    assert first.last("Service.User") == "app"
    assert parse_unit("").settings == ()
    assert parse_unit("Key=outside a section\n[Service]\nnot a setting\n").settings == ()


def test_names_spans_and_scalars() -> None:
    """Profile names from unit names, systemd spans in seconds, ``$`` kept literal."""
    assert name_of("ouroboros-web@preview1.service") == "ouroboros-web-preview1"
    assert name_of("9lives.service") == "s-9lives"
    assert name_of("on") == "s-on"
    assert yaml.safe_load(f"{key('ON')}: 1\n{key('OFF_HOURS')}: 2") == {"ON": 1, "OFF_HOURS": 2}
    assert seconds("2min 30s") == 150
    assert seconds("0") == 0
    assert seconds("") is None
    assert yaml.safe_load(q("a$b${c}")) == "a$$b$${c}"


def _response(body: bytes, kind: str = "text/plain") -> Answer:
    r = HttpResponse(url="http://x/", host_header=None, status=200, headers=(("Content-Type", kind),), body=body,
                     elapsed_s=0.0)  # fmt: skip
    return Answer(first=r, stable=True)


def _unit(name: str, props: dict[str, str], text: str = "") -> Unit:
    base = {"LoadState": "loaded", "UnitFileState": "enabled", "ActiveState": "active"}
    info = UnitInfo(unit=name, properties=tuple({**base, **props}.items()))
    return Unit(name=name, info=info, files=parse_unit(text), verify=None)


def _inventory() -> Inventory:
    proc = ProcessInfo(pid=10, user="app", cgroup="/system.slice/app.service", cwd="/srv/app/releases/r1")
    sockets = (
        Socket(port=22, addresses=("0.0.0.0", "::"), processes=(), argv=("sshd",), unit=None),
        Socket(port=8000, addresses=("127.0.0.1",), processes=(proc,), argv=("/srv/app/bin/app",), unit="app.service"),
    )  # fmt: skip
    app = _unit("app.service", {"User": "app", "NoNewPrivileges": "yes", "EnvironmentFiles": "/etc/app.env (ignore_errors=no)"},
                "# /etc/systemd/system/app.service\n[Service]\nEnvironmentFile=/etc/app.env\nNoNewPrivileges=yes\n")  # fmt: skip
    timer = _unit("backup.timer", {"TimersCalendar": "{ OnCalendar=*-*-* 03:00:00 ; next_elapse=x }",
                                   "RandomizedDelayUSec": "5min"})  # fmt: skip
    job = _unit("backup.service", {"ExecMainExitTimestamp": "", "Result": "success", "ExecMainStatus": "0"})
    env = ("API_TOKEN=tok-7731-secret\nDATABASE_URL=postgresql://app:pw-9917-secret@127.0.0.1:5432/appdb\n"
           "PRICE=$5\nEMPTY_PASSWORD=\n")  # fmt: skip
    return Inventory(
        target="local",
        sockets=sockets,
        systemd=True,
        units=(app,),
        timers=((timer, job),),
        env_files=(("/etc/app.env", env),),
        caddy=None,
        http=(((8000, "/health", None), _response(b"ok\n")), ((8000, "/", None), _response(b"<h1>app</h1>"))),
        redis_auth=(),
        paths=(
            (
                "/srv/app/current",
                PathState(
                    path="/srv/app/current",
                    is_symlink=True,
                    link_text="releases/r1",
                    resolved="/srv/app/releases/r1",
                    kind="dir",
                ),
            ),
        ),
        containers=False,
    )


def test_draft_declares_what_holds_and_comments_the_rest(tmp_path: Path) -> None:
    """The drafted profile validates; secrets stay out; unclear binds and unrun timers are commented out."""
    d = Drafter(_inventory(), name="unit-draft")
    for sock in d.inv.sockets:
        d.add_service(sock)
    text = document(d, sections(d), ["host-inventory"])
    assert "tok-7731-secret" not in text
    assert "pw-9917-secret" not in text
    path = tmp_path / "p.yaml"
    path.write_text(text)
    profile = load_profile(str(path), environ={})
    assert [s.name for s in profile.services] == ["app"]
    app = profile.service("app")
    assert (app.unit, app.user, app.bind, app.port, app.runs_from_release) == (
        "app.service",
        "app",
        "127.0.0.1",
        8000,
        True,
    )
    assert app.hardening == (("NoNewPrivileges", "yes"),)
    assert app.health is not None
    assert (app.health.path, app.health.body, app.health.content_type) == (
        "/health",
        "ok\n",
        "text/plain",
    )
    (env,) = profile.env_files
    assert dict(env.values) == {"PRICE": "$5", "EMPTY_PASSWORD": ""}
    assert env.keys == ("API_TOKEN", "DATABASE_URL")
    assert profile.timers == ()
    assert "# NOT DECLARED: port 22 is bound on 0.0.0.0, ::" in text
    assert "# NOT DECLARED: backup.service has never run" in text
    assert profile.release is not None
    assert profile.release.releases == "/srv/app/releases"
    assert profile.container_runtime == "forbidden"


@pytest.mark.parametrize(
    "argv",
    [
        ["init", "--target", "bogus://host"],
        ["init", "--target", "netns://gates-no-such-namespace"],
        ["init", "--name", "Not A Name"],
        ["init", "--ssh-config", "/nonexistent/ssh_config", "--target", "ssh://root@127.0.0.1"],
        ["init", "--unknown"],
    ],
)
def test_init_bad_arguments_exit_2(argv: list[str]) -> None:
    """Bad arguments are a usage error naming what is wrong, before anything is observed."""
    code, out, err = run_cli(*argv)
    assert code == 2, err
    assert out == ""
    assert err.startswith("gates: error:")
    assert "Traceback" not in err


def test_ssh_forward_of_an_ipv6_listener() -> None:
    """A listener on ``::`` or ``::1`` is forwarded with the address in brackets, as ``ssh -L`` needs."""
    assert forward_spec(40000, "127.0.0.1", 8088) == "127.0.0.1:40000:127.0.0.1:8088"
    assert forward_spec(40001, "::", 8088) == "127.0.0.1:40001:[::]:8088"
    assert forward_spec(40002, "::1", 5432) == "127.0.0.1:40002:[::1]:5432"


def test_init_on_an_unreachable_host_exits_3() -> None:
    """A host that cannot be observed is exit 3 with the reason, and nothing is printed as a profile."""
    code, out, err = run_cli("init", "--target", "ssh://root@127.0.0.1:1")
    assert code == 3
    assert out == ""
    assert "cannot observe ssh://root@127.0.0.1:1" in err
    assert "Connection refused" in err


def test_draft_keeps_only_bodies_that_hold(tmp_path: Path) -> None:
    """A body that changed or is not text is not declared; a 404 everywhere declares no health; a Redis that
    wants a password reads it from the environment."""
    inv = _inventory()
    socks = (
        Socket(port=9001, addresses=("127.0.0.1",), processes=(), argv=("a",), unit=None),
        Socket(port=9002, addresses=("127.0.0.1",), processes=(), argv=("b",), unit=None),
        Socket(port=9003, addresses=("127.0.0.1",), processes=(), argv=("c",), unit=None),
        Socket(port=6379, addresses=("127.0.0.1",), processes=(), argv=("redis-server",), unit=None),
    )
    changing = Answer(first=_response(b"now: 1").first, stable=False)
    binary = _response(b"\xff\xfe", "application/octet-stream")
    missing = Answer(
        first=HttpResponse(
            url="http://x/", host_header=None, status=404, headers=(), body=b"", elapsed_s=0.0
        ),
        stable=True,
    )
    http = (((9001, "/health", None), changing), ((9002, "/health", None), binary), ((9003, "/health", None), missing),
            ((9003, "/", None), missing))  # fmt: skip
    inv = replace(
        inv, sockets=socks, http=http, redis_auth=((6379, True),), units=(), timers=(), env_files=(), paths=()
    )
    d = Drafter(inv, name="bodies")
    for sock in socks:
        d.add_service(sock)
    text = document(d, sections(d), ["host-inventory"])
    path = tmp_path / "p.yaml"
    path.write_text(text)
    profile = load_profile(str(path), environ={"GATES_REDIS_PASSWORD": "r-secret"})
    health = {s.port: s.health for s in profile.services}
    assert health[9001] is not None
    assert (health[9001].status, health[9001].body) == (200, None)
    assert health[9002] is not None
    assert (health[9002].body, health[9002].content_type) == (None, "application/octet-stream")
    assert health[9003] is None
    assert profile.service("redis").password == "r-secret"
    assert "answered a body that changed, was not text or was long" in text
    assert "(/ answered 404): declare its health endpoint" in text


@pytest.mark.parametrize(("text", "declared"), [("A=1\n", True), ("A=1\nA=2\n", False)])
def test_two_units_sharing_an_env_file(tmp_path: Path, text: str, declared: bool) -> None:
    """Units naming one env file share its declaration; one that assigns a key twice is declared by neither."""
    units, socks = [], []
    for i, port in enumerate((8001, 8002)):
        proc = ProcessInfo(pid=20 + i, user="app", cgroup=f"/system.slice/app{i}.service", cwd="/")
        socks.append(Socket(port=port, addresses=("127.0.0.1",), processes=(proc,), argv=("app",),
                            unit=f"app{i}.service"))  # fmt: skip
        units.append(
            _unit(
                f"app{i}.service", {"User": "app", "EnvironmentFiles": "/etc/shared.env (ignore_errors=no)"}
            )
        )
    inv = replace(_inventory(), sockets=tuple(socks), units=tuple(units), timers=(), http=(), paths=(),
                  env_files=(("/etc/shared.env", text),))  # fmt: skip
    d = Drafter(inv, name="shared")
    for sock in socks:
        d.add_service(sock)
    path = tmp_path / "p.yaml"
    path.write_text(document(d, sections(d), ["host-inventory"]))
    profile = load_profile(str(path), environ={})
    assert [s.env_file for s in profile.services] == (["app0", "app0"] if declared else [None, None])
    assert [e.path for e in profile.env_files] == (["/etc/shared.env"] if declared else [])
