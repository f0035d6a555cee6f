"""HTTP probe: one bounded request, the whole answer observed."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import httpx

from conformance.errors import (
    ProbeProtocolError,
    ProbeResponseTooLarge,
    ProbeTimeout,
    ProbeUnreachable,
)
from conformance.probes.base import Context


def host_port(address: str, port: int) -> str:
    """Render ``address:port`` with brackets around IPv6 literals."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpResponse:
    """What an HTTP endpoint answered."""

    url: str
    host_header: str | None
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    elapsed_s: float

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive)."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    @property
    def media_type(self) -> str | None:
        """The Content-Type without parameters, lower-cased."""
        value = self.header("content-type")
        return value.split(";", 1)[0].strip().lower() if value is not None else None

    @property
    def body_sha256(self) -> str:
        """sha256 of the raw body."""
        return hashlib.sha256(self.body).hexdigest()

    def body_preview(self, limit: int = 120) -> str:
        """The body as text, cut to ``limit`` characters, for messages."""
        text = self.body.decode("utf-8", errors="replace")
        return text if len(text) <= limit else text[:limit] + "..."

    def fingerprint(self) -> tuple[int, str]:
        """Status and body digest: what identifies the server that answered."""
        return (self.status, self.body_sha256)


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpGet:
    """A request to ``address:port`` + ``path``, optionally with a ``Host`` header."""

    address: str
    port: int
    path: str
    method: str = "GET"
    host_header: str | None = None

    @property
    def url(self) -> str:
        """The URL requested."""
        return f"http://{host_port(self.address, self.port)}{self.path}"

    def observe(self, ctx: Context) -> HttpResponse:
        """Send the request within the profile's timeouts, deadline and size cap."""
        s = ctx.settings
        timeout = httpx.Timeout(
            connect=s.connect_timeout_s,
            read=s.read_timeout_s,
            write=s.read_timeout_s,
            pool=s.connect_timeout_s,
        )
        headers = {"Host": self.host_header} if self.host_header else {}
        headers["User-Agent"] = "gates-conformance"
        started = time.monotonic()
        try:
            with (
                httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
                client.stream(self.method, self.url, headers=headers) as response,
            ):
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_raw():
                    size += len(chunk)
                    if size > s.max_body_bytes:
                        raise ProbeResponseTooLarge(
                            f"{self.method} {self.url}: body exceeded the {s.max_body_bytes}-byte cap"
                        )
                    if time.monotonic() - started > s.deadline_s:
                        raise ProbeTimeout(
                            f"{self.method} {self.url}: no complete answer within {s.deadline_s:g}s"
                        )
                    chunks.append(chunk)
                return HttpResponse(
                    url=self.url,
                    host_header=self.host_header,
                    status=response.status_code,
                    headers=tuple((k, v) for k, v in response.headers.multi_items()),
                    body=b"".join(chunks),
                    elapsed_s=time.monotonic() - started,
                )
        except httpx.TimeoutException as exc:
            raise ProbeTimeout(f"{self.method} {self.url}: timed out ({type(exc).__name__})") from exc
        except (httpx.ConnectError, httpx.NetworkError) as exc:
            raise ProbeUnreachable(f"{self.method} {self.url}: {exc or type(exc).__name__}") from exc
        except (httpx.ProtocolError, httpx.DecodingError, httpx.InvalidURL) as exc:
            raise ProbeProtocolError(f"{self.method} {self.url}: {exc or type(exc).__name__}") from exc
