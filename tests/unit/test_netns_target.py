"""The ``netns://NAME`` target: commands, listeners and connections of the run see that namespace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.errors import ConfigError
from conformance.targets import NetnsSpec, make_target, parse_target

ROOT = Path(__file__).resolve().parents[2]
GATES = Path(sys.executable).with_name("gates")

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="network namespaces need root and iproute2"
)


def test_parse() -> None:
    """``netns://NAME`` parses; a name with a slash or nothing after the scheme is refused."""
    assert parse_target("netns://ref-1") == NetnsSpec(name="ref-1")
    assert parse_target("netns://ref-1").url == "netns://ref-1"  # type: ignore[union-attr]
    for bad in ("netns://", "netns://a/b", "netns://../x"):
        with pytest.raises(ConfigError, match="unsupported target"):
            parse_target(bad)


def test_missing_namespace_is_a_config_error() -> None:
    """A namespace that does not exist is a usage error naming it, not a probe failure."""
    with pytest.raises(ConfigError, match="network namespace 'gates-no-such-ns' not found"):
        make_target("netns://gates-no-such-ns")


@pytest.fixture
def namespace() -> Iterator[str]:
    """A fresh namespace with loopback up and one listener on 127.0.0.1:18123 inside it."""
    name = f"gates-t-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    server = None
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        server = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-c",
             "import socket,time\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
             "s.bind(('127.0.0.1',18123));s.listen();print('up',flush=True)\n"
             "while True:\n c,_=s.accept();c.sendall(b'inside');c.close()"],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert server.stdout is not None
        assert server.stdout.readline().strip() == b"up"
        yield name
    finally:
        if server is not None:
            server.kill()
            server.wait()
            if server.stdout is not None:
                server.stdout.close()
        subprocess.run(["ip", "netns", "delete", name], check=False)


@needs_root
def test_probes_run_inside(namespace: str) -> None:
    """After entering, a connection and the host's listener table are the namespace's, not this host's."""
    script = (
        "import json, socket\n"
        "from conformance.targets import make_target\n"
        "from conformance.probes.base import Context\n"
        "from conformance.probes.net import ListenSockets\n"
        "from conformance.profile import ProbeSettings\n"
        f"t = make_target('netns://{namespace}')\n"
        "with socket.create_connection(t.dial('127.0.0.1', 18123), timeout=2) as c: data = c.recv(16).decode()\n"
        "ports = sorted({x.port for x in ListenSockets().observe(Context(settings=ProbeSettings(), host=t.host)).listeners})\n"
        "out = t.host.run('cat /proc/net/tcp').stdout\n"
        "print(json.dumps({'name': t.name, 'data': data, 'ports': ports, 'sees': ':46CB' in out}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == {"name": f"netns://{namespace}", "data": "inside", "ports": [18123], "sees": True}


@needs_root
def test_cli_refuses_missing_namespace(tmp_path: Path) -> None:
    """``gates run --target netns://...`` for a namespace that is not there exits 2 and names it."""
    done = subprocess.run(
        [str(GATES), "run", "--profile", "oroboros", "--gate", "runtime-health", "--target",
         "netns://gates-no-such-ns", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "gates-no-such-ns" in done.stderr
    assert "Traceback" not in done.stderr
