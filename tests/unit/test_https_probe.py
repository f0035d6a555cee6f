"""HTTPS probes against a real TLS server on loopback: verified for the URL's host, SNI and Host sent,
a private CA trusted only when the profile names it, and every TLS failure an `error`, never a pass."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conformance.errors import ProbeError, ProbeTlsError
from conformance.probes.base import Context
from conformance.probes.http import HttpGet, HttpResponse, service_request
from conformance.profile import ProbeSettings, Service
from conformance.targets import make_host

NAME = "api.gates.test"  # the certificate's name; it resolves nowhere, so every request is dialled


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Pki:
    """A private CA and a server certificate it issued for ``NAME``."""

    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Issue the CA and the server certificate."""
    root = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("gates test CA"))
        .issuer_name(_name("gates test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(NAME))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out = Pki(ca=root / "ca.pem", cert=root / "server.pem", key=root / "server.key")
    out.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(_pem_key(key))
    return out


@dataclass
class Server:
    """A loopback server and what its clients sent: SNI names and Host headers."""

    port: int
    sni: list[str | None] = field(default_factory=list)
    hosts: list[str | None] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def _serve(tls: ssl.SSLContext | None) -> Iterator[Server]:
    seen = Server(port=0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.hosts.append(self.headers.get("Host"))
            seen.paths.append(self.path)
            body = json.dumps({"ok": True}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        tls.sni_callback = lambda _sock, name, _ctx: seen.sni.append(name)  # type: ignore[assignment,func-returns-value]
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    seen.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def https(pki: Pki) -> Iterator[Server]:
    """A TLS server presenting the private CA's certificate for ``NAME``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert, pki.key)
    yield from _serve(context)


@pytest.fixture
def plain() -> Iterator[Server]:
    """A plain-HTTP server."""
    yield from _serve(None)


def _observe(spec: HttpGet, *, ca: Path | None) -> HttpResponse:
    """Observe with every name dialled to loopback (as an SSH forward or /etc/hosts entry would)."""
    ctx = Context(
        settings=ProbeSettings(ca_file=None if ca is None else str(ca)),
        host=make_host("local"),
        dial=lambda _address, port: ("127.0.0.1", port),
    )
    return spec.observe(ctx)


def _service(url: str) -> Service:
    return Service(name="api", kind="http", role="api", unit=None, user=None, bind="127.0.0.1", port=1,
                   env_file=None, health=None, identity_path=None, url=url)  # fmt: skip


def test_private_ca_named_by_the_profile_is_trusted(https: Server, pki: Pki) -> None:
    """With probe.caFile the certificate verifies for the URL's host; SNI and Host carry that name, and
    the request goes below the URL's path."""
    spec = service_request(_service(f"https://{NAME}:{https.port}/base/"), "/healthz")
    answer = _observe(spec, ca=pki.ca)
    assert answer.status == 200
    assert json.loads(answer.body) == {"ok": True}
    assert answer.url == f"https://{NAME}:{https.port}/base/healthz"
    assert https.sni == [NAME]
    assert https.hosts == [f"{NAME}:{https.port}"]
    assert https.paths == ["/base/healthz"]


def test_unknown_ca_is_a_tls_error(https: Server) -> None:
    """Without the CA the handshake fails: `error` with the verification reason, not a pass."""
    spec = service_request(_service(f"https://{NAME}:{https.port}"), "/healthz")
    with pytest.raises(ProbeTlsError, match="certificate verify failed"):
        _observe(spec, ca=None)
    assert https.paths == []


def test_certificate_for_another_name_is_a_tls_error(https: Server, pki: Pki) -> None:
    """A trusted certificate that does not carry the URL's host name does not verify."""
    spec = service_request(_service(f"https://other.gates.test:{https.port}"), "/healthz")
    with pytest.raises(ProbeTlsError, match="certificate verify failed"):
        _observe(spec, ca=pki.ca)
    assert https.sni == ["other.gates.test"]
    assert https.paths == []


def test_https_to_a_plain_http_port_is_a_tls_error(plain: Server, pki: Pki) -> None:
    """An https URL answered in plain HTTP is a TLS failure, and the request is never sent in clear."""
    spec = service_request(_service(f"https://{NAME}:{plain.port}"), "/healthz")
    with pytest.raises(ProbeTlsError):
        _observe(spec, ca=pki.ca)
    assert plain.paths == []


def test_http_to_a_tls_port_is_an_error(https: Server) -> None:
    """Plain HTTP to a TLS listener gets no HTTP answer: an `error` of some kind, never a status."""
    spec = service_request(_service(f"http://127.0.0.1:{https.port}"), "/healthz")
    with pytest.raises(ProbeError):
        _observe(spec, ca=None)


def test_plain_url_is_plain_http(plain: Server) -> None:
    """An http URL is sent as before: no TLS, Host is the URL's authority."""
    spec = service_request(_service(f"http://127.0.0.1:{plain.port}"), "/healthz")
    assert not spec.tls
    assert _observe(spec, ca=None).status == 200
    assert plain.hosts == [f"127.0.0.1:{plain.port}"]


def test_unreadable_ca_file_is_a_tls_error(https: Server, tmp_path: Path) -> None:
    """A CA file that is not PEM certificates makes the probe an `error` naming probe.caFile."""
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    spec = service_request(_service(f"https://{NAME}:{https.port}"), "/healthz")
    with pytest.raises(ProbeTlsError, match=r"probe\.caFile"):
        _observe(spec, ca=bad)
