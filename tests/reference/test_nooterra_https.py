"""A Nooterra API met over HTTPS, as a hosted deployment's clients meet it: the reference API behind a
real Caddy terminating TLS with its own internal CA. Trusting that CA through `ca_file`, the live and
hosted-baseline gates pass over TLS; without it, what could not be observed is an error
(`probe_tls_error`) and the gates are incomplete, never passed."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.nooterra.deployment import default_state_dir
from fixtures.procs import need, spawn, stop, wait_port
from fixtures.registry import REFERENCES
from fixtures.state import read_state
from gates import report as reports
from gates.runner import read_results
from gates.testing import not_passing, run_cli

REF = REFERENCES["nooterra"]
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
GATES = ("--gate", "nooterra-live", "--gate", "hosted-baseline")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _caddyfile(tls_port: int, http_port: int, api_port: int) -> str:
    return (
        "{\n    admin off\n    skip_install_trust\n    auto_https disable_redirects\n"
        f"    http_port {http_port}\n}}\n\n"
        f"https://localhost:{tls_port} {{\n    bind 127.0.0.1\n    tls internal\n"
        f"    reverse_proxy 127.0.0.1:{api_port}\n}}\n"
    )


@pytest.fixture
def hosted(tmp_path: Path) -> Iterator[tuple[list[str], str, Path]]:
    """The reference, its API fronted by Caddy on https://localhost:PORT: run arguments, base URL, CA file."""
    state = default_state_dir(f"selftest-{WORKER}-https")
    REF.down(state)
    args = REF.up(state)
    front = tmp_path / "caddy"
    front.mkdir()
    tls_port = _free_port()
    (front / "Caddyfile").write_text(
        _caddyfile(tls_port, _free_port(), int(read_state(state)["ports"]["api"]))
    )
    env = {**os.environ, "HOME": str(front), "XDG_DATA_HOME": str(front / "data"),
           "XDG_CONFIG_HOME": str(front / "config")}  # fmt: skip
    log = front / "caddy.log"
    caddy = spawn("caddy", [need("caddy", "caddy"), "run", "--config", str(front / "Caddyfile"),
                            "--adapter", "caddyfile"], log=log, env=env)  # fmt: skip
    try:
        wait_port("127.0.0.1", tls_port, proc=caddy, timeout_s=20.0, log=log)
        ca = front / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        deadline = time.monotonic() + 10
        while not ca.is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ca.is_file(), log.read_text()
        yield args, f"https://localhost:{tls_port}", ca
    finally:
        stop(caddy)
        REF.down(state)


def test_api_over_https_with_its_ca(
    hosted: tuple[list[str], str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trusting the front's CA, every live and hosted-baseline check passes through TLS, and the evidence
    names the https base URL; without the CA the API's checks are errors with probe_tls_error."""
    up_args, base, ca = hosted
    args = [a for i, a in enumerate(up_args) if "--gate" not in (a, up_args[i - 1] if i else "")]
    for name, value in REF.environment:
        monkeypatch.setenv(name, value)
    over_tls = ["--set", f"api.base_url={base}"]
    trusted = run_cli(
        "run", *args, *GATES, *over_tls, "--set", f"ca_file={ca}", "--out", str(tmp_path / "ok")
    )
    untrusted = run_cli("run", *args, *GATES, *over_tls, "--out", str(tmp_path / "no-ca"), "--quiet")

    assert trusted[0] == 0, trusted[1]
    evidence = reports.verify(tmp_path / "ok" / "gates" / "hosted-baseline-evidence.json")
    assert evidence["inputs"]["baseUrl"] == base
    assert evidence["status"] == "pass"
    live = reports.verify(tmp_path / "ok" / "gates" / "nooterra-live.json")
    assert live["verdict"]["passedChecks"] == live["verdict"]["totalChecks"] >= 55

    assert untrusted[0] == 3, untrusted[1]
    failed = not_passing(tmp_path / "no-ca")
    assert failed["health.http.status_exact[api]"] == "error"
    assert failed["nooterra.auth_mode.proxied[api]"] == "error"
    assert set(failed.values()) == {"error"}  # nothing observed over TLS is judged a failure
    assert not any(k.endswith(("[magic-link]", "[x402-gateway]", "[postgres]")) for k in failed)
    record = read_results(tmp_path / "no-ca" / "run" / "results.ndjson")["health.http.status_exact[api]"]
    assert "probe_tls_error" in json.dumps(record)
