"""HTTP probe: one bounded request, the whole answer observed."""

from __future__ import annotations

import functools
import hashlib
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from conformance.errors import (
    ConnectionRefused,
    ProbeProtocolError,
    ProbeResponseTooLarge,
    ProbeTimeout,
    ProbeTlsError,
    ProbeUnreachable,
    is_refusal,
)
from conformance.probes.base import Context
from conformance.profile import Service, url_endpoint


def host_port(address: str, port: int) -> str:
    """Render ``address:port`` with brackets around IPv6 literals."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a connection failure, if that is what it was."""
    seen: BaseException | None = exc
    for _ in range(8):  # httpx -> httpcore -> ssl: a short chain of causes
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


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
def _ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    # Built once per CA file (under a lock, since probes start together): loading CA certificates is
    # CPU-bound and, per request, would eat the deadline. The system's CAs are always trusted; a
    # profile's probe.caFile adds its own (an internal CA).
    with _SSL_LOCK:
        context = ssl.create_default_context()
        if ca_file:
            context.load_verify_locations(cafile=ca_file)
        return context


def _transport(deadline: float, ca_file: str | None = None) -> httpx.HTTPTransport:
    try:
        context = _ssl_context(ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ProbeTlsError(f"cannot load the CA certificates of probe.caFile {ca_file}: {exc}") from exc
    transport = httpx.HTTPTransport(verify=context, retries=0)
    transport._pool = httpcore.ConnectionPool(  # a network backend is not exposed by httpx's constructor
        ssl_context=context, max_connections=1, network_backend=_DeadlineBackend(deadline)
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
    """A request to ``address:port`` + ``path``, optionally with a ``Host`` header.

    With ``tls`` it is HTTPS: the certificate must verify for ``server_name`` (default: the
    address), which is also sent as SNI and as the default ``Host``, wherever the connection is
    dialled (directly, or the local end of an SSH forward).
    """

    address: str
    port: int
    path: str
    method: str = "GET"
    host_header: str | None = None
    # Extra request headers (e.g. an ops token); kept out of reprs, since they may carry secrets.
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    tls: bool = False
    server_name: str | None = None

    @property
    def url(self) -> str:
        """The URL requested."""
        if self.tls:
            return f"https://{_authority(self.server_name or self.address, self.port, 443)}{self.path}"
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
        extensions: dict[str, Any] = {}
        if self.tls:
            name = self.server_name or self.address
            url = f"https://{host_port(address, port)}{self.path}"
            extensions["sni_hostname"] = name
            default_host = _authority(name, self.port, 443)
        else:
            url = f"http://{host_port(address, port)}{self.path}"
            default_host = host_port(self.address, self.port)
        headers = {"Host": self.host_header or default_host}
        headers["User-Agent"] = "gates-conformance"
        headers.update(self.headers)
        started = time.monotonic()
        try:
            with (
                httpx.Client(
                    timeout=timeout,
                    follow_redirects=False,
                    trust_env=False,
                    transport=_transport(started + s.deadline_s, s.ca_file),
                ) as client,
                client.stream(self.method, url, headers=headers, extensions=extensions) as response,
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
            tls = tls_failure(exc)
            if tls is not None:
                raise ProbeTlsError(
                    f"{self.method} {self.url}: TLS handshake failed: {tls_reason(tls)}"
                ) from exc
            if is_refusal(exc):
                raise ConnectionRefused(
                    f"{self.method} {self.url}: connection refused (nothing listens on "
                    f"{host_port(self.address, self.port)})",
                    endpoint=host_port(self.address, self.port),
                ) from exc
            raise ProbeUnreachable(f"{self.method} {self.url}: {exc or type(exc).__name__}") from exc
        except (httpx.ProtocolError, httpx.DecodingError, httpx.InvalidURL) as exc:
            raise ProbeProtocolError(f"{self.method} {self.url}: {exc or type(exc).__name__}") from exc


def _authority(name: str, port: int, default_port: int) -> str:
    """``name[:port]`` as a URL or ``Host`` header carries it (the port left out when it is the default)."""
    shown = f"[{name}]" if ":" in name else name
    return shown if port == default_port else f"{shown}:{port}"


def tls_reason(exc: ssl.SSLError) -> str:
    """A TLS error as one line (``certificate verify failed: self-signed certificate``)."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    return str(exc.reason or exc)


def service_request(
    svc: Service, path: str, *, method: str = "GET", headers: tuple[tuple[str, str], ...] = ()
) -> HttpGet:
    """A request to ``svc`` as its clients reach it: under its declared ``url`` (HTTPS when the URL
    says so, and below the URL's path), else plain HTTP to its bind address and port."""
    if svc.url is None:
        return HttpGet(address=svc.bind, port=svc.port, path=path, method=method, headers=headers)
    parts = urlsplit(svc.url)
    tls = parts.scheme == "https"
    address, port = url_endpoint(svc.url)
    return HttpGet(
        address=address,
        port=port,
        path=parts.path.rstrip("/") + path,
        method=method,
        headers=headers,
        tls=tls,
        server_name=parts.hostname if tls else None,
    )
