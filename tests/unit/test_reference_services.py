"""Behavioural tests for the loopback reference services in ``fixtures.oroboros.services``."""

from __future__ import annotations

import http.client
import json
import os
import re
import selectors
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE = "fixtures.oroboros.services"
STARTUP_TIMEOUT_S = 15.0
SERVICE_ENV_KEYS = (
    "WEB_PORT",
    "WEB_ROOT",
    "WEB_API_PROXY_TARGET",
    "WORKER_HEALTH_HOST",
    "WORKER_HEALTH_PORT",
    "SLOT_ID",
    "DATABASE_URL",
)
INDEX_HTML = b"<!doctype html><title>spa</title>\n"
SLOTS_CONTRACT = (
    b'{"acquire_behavior":{"all_slots_occupied":{"acquired":false,"queue_reason":"WAITING_FOR_SLOT",'
    b'"queue_behavior":"run_kept_queued_while_waiting_for_slot"}},'
    b'"slot_ids":["preview-1","preview-2","preview-3"]}'
)


@dataclass
class Service:
    """A running reference service process and the address it listens on."""

    process: subprocess.Popen[str]
    listening: dict[str, Any]

    @property
    def port(self) -> int:
        """The bound TCP port reported in the listening line."""
        return int(self.listening["port"])

    @property
    def url(self) -> str:
        """Base URL of the service on loopback."""
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Reply:
    """A fully read HTTP response."""

    status: int
    headers: Message
    body: bytes


StartService = Callable[..., Service]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Return the current environment without service variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV_KEYS}
    env.update(extra or {})
    return env


def fetch(
    port: int,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
) -> Reply:
    """Send one request to 127.0.0.1:``port`` and read the whole response."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        try:
            return Reply(response.status, response.headers, response.read())
        finally:
            response.close()
    finally:
        conn.close()


@pytest.fixture
def web_root(tmp_path: Path) -> Path:
    """A document root holding an index.html and one static asset."""
    root = tmp_path / "webroot"
    root.mkdir()
    (root / "index.html").write_bytes(INDEX_HTML)
    (root / "app.css").write_text("body{}\n")
    return root


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[StartService]:
    """Start services on free loopback ports; terminate them all (expecting exit 0) at teardown."""
    started: list[tuple[subprocess.Popen[str], Path]] = []

    def start(kind: str, *args: str, env: dict[str, str] | None = None) -> Service:
        log = tmp_path / f"{kind}-{len(started)}.stderr"
        with log.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", MODULE, kind, "--host", "127.0.0.1", "--port", "0", *args],
                cwd=REPO_ROOT,
                env=clean_env(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        started.append((process, log))
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            ready = selector.select(STARTUP_TIMEOUT_S)
        line = process.stdout.readline() if ready else ""
        assert line, f"{kind} did not start (rc={process.poll()}): {log.read_text()}"
        listening = json.loads(line)
        assert listening["event"] == "listening"
        return Service(process, listening)

    yield start
    codes = []
    for process, _ in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            codes.append(process.wait(timeout=10))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(process.wait())
        finally:
            assert process.stdout is not None
            process.stdout.close()
    assert codes == [0] * len(codes), [log.read_text() for _, log in started]


def run_to_exit(kind: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a service that is expected to refuse to start, and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", MODULE, kind, "--port", "0", *args],
        cwd=REPO_ROOT,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_S,
        check=False,
    )


class TestWeb:
    """The static SPA surface without an API proxy target."""

    def test_listening_line_reports_kind_name_and_pid(
        self, start_service: StartService, web_root: Path
    ) -> None:
        """The start-up JSON line carries kind, name, host, port and pid."""
        service = start_service("web", "--root", str(web_root), "--name", "web-main")
        assert service.listening["kind"] == "web"
        assert service.listening["name"] == "web-main"
        assert service.listening["host"] == "127.0.0.1"
        assert service.listening["pid"] == service.process.pid

    def test_health_is_exact(self, start_service: StartService, web_root: Path) -> None:
        """GET /health answers 200 text/plain with body ok and a newline."""
        reply = fetch(start_service("web", "--root", str(web_root)).port, "/health")
        assert (reply.status, reply.body) == (200, b"ok\n")
        assert reply.headers["Content-Type"] == "text/plain"
        assert reply.headers["Content-Length"] == "3"

    def test_health_with_query_falls_back_to_spa(self, start_service: StartService, web_root: Path) -> None:
        """/health with a query string is not the health route and gets index.html."""
        reply = fetch(start_service("web", "--root", str(web_root)).port, "/health?x=1")
        assert (reply.status, reply.body) == (200, INDEX_HTML)
        assert reply.headers["Content-Type"] == "text/html"

    @pytest.mark.parametrize("path", ["/", "/runs/42", "/api/slots/contract"])
    def test_spa_fallback(self, start_service: StartService, web_root: Path, path: str) -> None:
        """Extensionless paths, the root and (without a proxy) /api paths serve index.html."""
        reply = fetch(start_service("web", "--root", str(web_root)).port, path)
        assert (reply.status, reply.body) == (200, INDEX_HTML)
        assert reply.headers["Content-Type"] == "text/html"

    def test_static_file_and_missing_asset(self, start_service: StartService, web_root: Path) -> None:
        """Existing files are served and missing paths with an extension are 404."""
        port = start_service("web", "--root", str(web_root)).port
        assert fetch(port, "/app.css").body == b"body{}\n"
        assert fetch(port, "/missing.js").status == 404

    def test_head_and_other_methods(self, start_service: StartService, web_root: Path) -> None:
        """HEAD /health is 404 and POST on a non-API path is 405."""
        port = start_service("web", "--root", str(web_root)).port
        assert fetch(port, "/health", method="HEAD").status == 404
        assert fetch(port, "/runs", method="POST", body=b"{}").status == 405

    def test_env_file_supplies_port_and_root(self, web_root: Path) -> None:
        """WEB_PORT and a quoted WEB_ROOT from --env-file are honoured."""
        env_file = web_root.parent / "web.env"
        env_file.write_text(f"# web surface\n\nWEB_PORT=1\nWEB_PORT=0\nWEB_ROOT='{web_root}'\n")
        process = subprocess.Popen(
            [sys.executable, "-m", MODULE, "web", "--env-file", str(env_file)],
            cwd=REPO_ROOT,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert process.stdout is not None
            listening = json.loads(process.stdout.readline())
            assert fetch(listening["port"], "/").body == INDEX_HTML
        finally:
            process.terminate()
            assert process.wait(timeout=10) == 0
            assert process.stdout is not None
            process.stdout.close()

    def test_missing_port_or_root_exits_2(self, web_root: Path) -> None:
        """The web surface refuses to start without a port or with a missing root."""
        no_port = subprocess.run(
            [sys.executable, "-m", MODULE, "web", "--root", str(web_root)],
            cwd=REPO_ROOT,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT_S,
            check=False,
        )
        assert no_port.returncode == 2
        assert "WEB_PORT" in no_port.stderr
        no_root = run_to_exit("web", "--root", str(web_root / "absent"))
        assert no_root.returncode == 2
        assert "does not exist" in no_root.stderr


class TestWebProxy:
    """The web surface proxying API paths to an api instance."""

    def test_api_paths_are_proxied(self, start_service: StartService, web_root: Path) -> None:
        """/api and /openapi.json reach the api, keeping its headers and the trace id."""
        api = start_service("api", "--name", "api-main")
        web = start_service("web", "--root", str(web_root), "--api-target", api.url)
        reply = fetch(web.port, "/api/slots/contract", headers={"X-Trace-Id": "trace-proxy"})
        assert (reply.status, reply.body) == (200, SLOTS_CONTRACT)
        assert reply.headers["content-type"] == "application/json"
        assert reply.headers["x-trace-id"] == "trace-proxy"
        assert reply.headers["server"] == "uvicorn"
        assert fetch(web.port, "/openapi.json").status == 200
        assert fetch(web.port, "/api/unknown", method="POST", body=b"{}").status == 404

    def test_unreachable_upstream_is_502(self, start_service: StartService, web_root: Path) -> None:
        """A dead proxy target yields 502 with the upstream-unavailable text."""
        web = start_service("web", "--root", str(web_root), "--api-target", "http://127.0.0.1:9")
        reply = fetch(web.port, "/api/slots/contract")
        assert reply.status == 502
        assert reply.body.startswith(b"API upstream unavailable: ")


class TestApi:
    """The FastAPI/uvicorn backend stand-in."""

    def test_health_is_exact(self, start_service: StartService) -> None:
        """GET /health answers 200 application/json with the exact status document."""
        reply = fetch(start_service("api").port, "/health")
        assert (reply.status, reply.body) == (200, b'{"status":"ok"}')
        assert reply.headers["content-type"] == "application/json"
        assert reply.headers["content-length"] == "15"
        assert reply.headers["server"] == "uvicorn"

    def test_trace_id_is_echoed_or_generated(self, start_service: StartService) -> None:
        """x-trace-id echoes the request header, or is a fresh uuid4 hex."""
        port = start_service("api").port
        assert fetch(port, "/health", headers={"X-Trace-Id": "abc123"}).headers["x-trace-id"] == "abc123"
        assert re.fullmatch(r"[0-9a-f]{32}", fetch(port, "/health").headers["x-trace-id"])

    def test_wrong_method_and_unknown_path(self, start_service: StartService) -> None:
        """POST and HEAD /health are 405 and unknown paths 404, with JSON details."""
        port = start_service("api").port
        post = fetch(port, "/health", method="POST", body=b"{}", headers={"X-Trace-Id": "t-405"})
        assert (post.status, post.body) == (405, b'{"detail":"Method Not Allowed"}')
        assert post.headers["x-trace-id"] == "t-405"
        assert fetch(port, "/health", method="HEAD").status == 405
        missing = fetch(port, "/nope")
        assert (missing.status, missing.body) == (404, b'{"detail":"Not Found"}')

    def test_slots_contract_and_openapi(self, start_service: StartService) -> None:
        """The slot contract and OpenAPI documents are served byte for byte."""
        port = start_service("api").port
        assert fetch(port, "/api/slots/contract").body == SLOTS_CONTRACT
        assert json.loads(fetch(port, "/openapi.json").body)["info"]["title"] == "Ouroboros API"


class TestApiSlotGuard:
    """The preview-slot database binding check at api start-up."""

    def test_mismatched_database_exits_3(self) -> None:
        """A slot bound to another slot's database refuses to start with exit code 3."""
        env = {"SLOT_ID": "preview-2", "DATABASE_URL": "postgresql://u:p@127.0.0.1/app_preview_1?x=1"}
        result = run_to_exit("api", env=env)
        assert result.returncode == 3
        assert result.stdout == ""
        assert result.stderr.strip() == (
            "preview_slot_database_binding_invalid:slot_database_mismatch:"
            "expected=app_preview_2:actual=app_preview_1"
        )

    def test_missing_database_exits_3(self) -> None:
        """A slot without DATABASE_URL refuses to start with missing_database_name."""
        result = run_to_exit("api", env={"SLOT_ID": "preview3"})
        assert result.returncode == 3
        assert result.stderr.strip() == "preview_slot_database_binding_invalid:missing_database_name"

    def test_matching_binding_from_env_file_starts(self, start_service: StartService, tmp_path: Path) -> None:
        """A slot whose env file names its own database starts and serves health."""
        env_file = tmp_path / "api-preview-1.env"
        env_file.write_text('SLOT_ID=preview1\nDATABASE_URL="postgresql://u@127.0.0.1:5432/app_preview_1"\n')
        api = start_service("api", "--env-file", str(env_file), "--name", "api-preview-1")
        assert fetch(api.port, "/health").status == 200


class TestWorker:
    """The worker health endpoint stand-in."""

    def test_health_is_exact(self, start_service: StartService) -> None:
        """GET /health answers 200 text/plain with body ok and a newline."""
        reply = fetch(start_service("worker").port, "/health")
        assert (reply.status, reply.body) == (200, b"ok\n")
        assert reply.headers["Content-Type"] == "text/plain"
        assert reply.headers["Content-Length"] == "3"

    @pytest.mark.parametrize("path", ["/health?x=1", "/", "/metrics"])
    def test_other_paths_are_bodiless_404(self, start_service: StartService, path: str) -> None:
        """Any GET other than the exact /health is a 404 without a body."""
        reply = fetch(start_service("worker").port, path)
        assert (reply.status, reply.body) == (404, b"")

    def test_head_and_post_are_501(self, start_service: StartService) -> None:
        """Methods the handler does not implement, including HEAD, are 501."""
        port = start_service("worker").port
        assert fetch(port, "/health", method="HEAD").status == 501
        assert fetch(port, "/health", method="POST", body=b"").status == 501


class TestHealthFaults:
    """Faults injected into GET /health."""

    def test_status_fault_with_body(self, start_service: StartService) -> None:
        """status:<code> changes only the status, and --fault-body replaces the body."""
        port = start_service("api", "--fault-health", "status:503", "--fault-body", "down\\n").port
        reply = fetch(port, "/health")
        assert (reply.status, reply.body) == (503, b"down\n")
        assert reply.headers["content-type"] == "application/json"
        assert fetch(port, "/openapi.json").status == 200

    def test_status_fault_keeps_normal_body(self, start_service: StartService, web_root: Path) -> None:
        """status:<code> without --fault-body keeps the normal body and content type."""
        port = start_service("web", "--root", str(web_root), "--fault-health", "status:500").port
        reply = fetch(port, "/health")
        assert (reply.status, reply.body, reply.headers["Content-Type"]) == (500, b"ok\n", "text/plain")

    def test_body_fault(self, start_service: StartService) -> None:
        """body:<text> keeps status and content type but replaces the body, escapes interpreted."""
        reply = fetch(start_service("worker", "--fault-health", "body:ok\\nextra").port, "/health")
        assert (reply.status, reply.body) == (200, b"ok\nextra")
        assert reply.headers["Content-Type"] == "text/plain"
        assert reply.headers["Content-Length"] == "8"

    def test_ctype_fault(self, start_service: StartService) -> None:
        """ctype:<type> keeps status and body but changes the content type."""
        reply = fetch(start_service("worker", "--fault-health", "ctype:text/html").port, "/health")
        assert (reply.status, reply.body, reply.headers["Content-Type"]) == (200, b"ok\n", "text/html")

    def test_hang_does_not_block_other_requests(self, start_service: StartService) -> None:
        """A hanging health request times out while other routes keep answering."""
        port = start_service("api", "--fault-health", "hang").port
        with pytest.raises(TimeoutError):
            fetch(port, "/health", timeout=1.0)
        assert fetch(port, "/openapi.json").status == 200
