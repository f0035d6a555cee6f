"""HTTP probe: one bounded request, the whole answer observed."""

from __future__ import annotations

import functools
import hashlib
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpcore
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


class _DeadlineStream(httpcore.NetworkStream):
    """Caps every socket read and write at the time left before the probe's total deadline.

    httpx only bounds each read; without this a peer that drips its status line and headers
    a byte at a time would hold the probe for as long as it likes.
    """

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def _left(self, timeout: float | None) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("total deadline exceeded")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, self._left(timeout)), self._deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, deadline: float) -> None:
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


_SSL_LOCK = threading.Lock()


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Built once (under a lock, since probes start together): loading CA certificates is CPU-bound
    # and, per request, would eat the deadline.
    with _SSL_LOCK:
        return ssl.create_default_context()


def _transport(deadline: float) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(verify=_ssl_context(), retries=0)
    transport._pool = httpcore.ConnectionPool(  # a network backend is not exposed by httpx's constructor
        ssl_context=_ssl_context(), max_connections=1, network_backend=_DeadlineBackend(deadline)
    )
    return transport


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
    # Extra request headers (e.g. an ops token); kept out of reprs, since they may carry secrets.
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

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
        address, port = ctx.dial(self.address, self.port)
        url = f"http://{host_port(address, port)}{self.path}"
        headers = {"Host": self.host_header or host_port(self.address, self.port)}
        headers["User-Agent"] = "gates-conformance"
        headers.update(self.headers)
        started = time.monotonic()
        try:
            with (
                httpx.Client(
                    timeout=timeout,
                    follow_redirects=False,
                    trust_env=False,
                    transport=_transport(started + s.deadline_s),
                ) as client,
                client.stream(self.method, url, headers=headers) as response,
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
            if time.monotonic() - started >= s.deadline_s:
                raise ProbeTimeout(
                    f"{self.method} {self.url}: no complete answer within {s.deadline_s:g}s"
                ) from exc
            raise ProbeTimeout(f"{self.method} {self.url}: timed out ({type(exc).__name__})") from exc
        except (httpx.ConnectError, httpx.NetworkError) as exc:
            raise ProbeUnreachable(f"{self.method} {self.url}: {exc or type(exc).__name__}") from exc
        except (httpx.ProtocolError, httpx.DecodingError, httpx.InvalidURL) as exc:
            raise ProbeProtocolError(f"{self.method} {self.url}: {exc or type(exc).__name__}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class BurstResult:
    """What a burst of identical requests met: status counts and the first 429's ``retry-after``."""

    url: str
    sent: int
    statuses: tuple[tuple[int, int], ...]
    first_429_retry_after: str | None
    saw_429: bool
    out_of_time: bool

    def count(self, predicate: Any) -> int:
        """How many answers had a status for which ``predicate(status)`` holds."""
        return sum(n for status, n in self.statuses if predicate(status))


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpBurst:
    """Up to ``max_requests`` sequential requests, stopping at the first 429.

    The whole burst is bounded by four probe deadlines; a burst cut short by that bound before it
    met a 429 is reported as ``out_of_time`` rather than as a limit that does not exist.
    """

    request: HttpGet
    max_requests: int

    def observe(self, ctx: Context) -> BurstResult:
        """Send the burst."""
        budget = time.monotonic() + 4 * ctx.settings.deadline_s
        statuses: Counter[int] = Counter()
        retry_after: str | None = None
        sent = 0
        out_of_time = False
        while sent < self.max_requests:
            if time.monotonic() >= budget:
                out_of_time = True
                break
            answer = self.request.observe(ctx)
            sent += 1
            statuses[answer.status] += 1
            if answer.status == 429:
                retry_after = answer.header("retry-after")
                break
        return BurstResult(
            url=self.request.url,
            sent=sent,
            statuses=tuple(sorted(statuses.items())),
            first_429_retry_after=retry_after,
            saw_429=statuses[429] > 0,
            out_of_time=out_of_time,
        )
