"""Just enough RESP (the Redis protocol) to send ``AUTH`` and ``PING`` and read one reply within bounds.

A general client reads whatever length a server announces: a hostile server announcing a
huge bulk reply made one grow without limit. This one never holds more than the probe's
``max_body_bytes`` of a reply, and never waits past its total deadline.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from conformance.errors import (
    ConnectionRefused,
    ProbeProtocolError,
    ProbeResponseTooLarge,
    ProbeTimeout,
    ProbeUnreachable,
    is_refusal,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """One RESP reply: a status or bulk text, or the error line the server sent."""

    text: str | None
    error: str | None


class RespConnection:
    """One connection, bounded by a connect timeout, a read timeout, a total deadline and a byte cap."""

    def __init__(
        self,
        address: str,
        port: int,
        *,
        what: str,
        connect_s: float,
        read_s: float,
        deadline_s: float,
        cap: int,
    ) -> None:
        self.what = what
        self.read_s = read_s
        self.cap = cap
        self.deadline = time.monotonic() + deadline_s
        self.buffer = b""
        try:
            self.sock = socket.create_connection((address, port), timeout=connect_s)
        except TimeoutError as exc:
            raise ProbeTimeout(f"{what}: connect timed out after {connect_s:g}s") from exc
        except OSError as exc:
            if is_refusal(exc):
                raise ConnectionRefused(f"{what}: connection refused", endpoint=f"{address}:{port}") from exc
            raise ProbeUnreachable(f"{what}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def command(self, *parts: str) -> Reply:
        """Send one command and read its reply."""
        payload = f"*{len(parts)}\r\n".encode() + b"".join(
            b"$%d\r\n%s\r\n" % (len(p.encode()), p.encode()) for p in parts
        )
        try:
            self.sock.sendall(payload)
        except OSError as exc:
            raise ProbeUnreachable(f"{self.what}: {exc.strerror or exc}") from exc
        return self._reply()

    def _fill(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ProbeTimeout(f"{self.what}: no complete reply within the probe deadline")
        self.sock.settimeout(min(self.read_s, left))
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError as exc:
            raise ProbeTimeout(f"{self.what}: no reply within {min(self.read_s, left):.3g}s") from exc
        except OSError as exc:
            raise ProbeUnreachable(f"{self.what}: {exc.strerror or exc}") from exc
        if not chunk:
            raise ProbeProtocolError(f"{self.what}: the server closed the connection before a complete reply")
        self.buffer += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > self.cap:
                raise ProbeResponseTooLarge(f"{self.what}: a reply line longer than {self.cap} bytes")
            self._fill()
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        if len(line) > self.cap:
            raise ProbeResponseTooLarge(f"{self.what}: a reply line longer than {self.cap} bytes")
        return line

    def _reply(self) -> Reply:
        line = self._line()
        kind, rest = line[:1], line[1:].decode("utf-8", "replace")
        if kind == b"+":
            return Reply(text=rest, error=None)
        if kind == b"-":
            return Reply(text=None, error=rest)
        if kind == b"$":
            try:
                size = int(rest)
            except ValueError:
                raise ProbeProtocolError(f"{self.what}: bulk length {rest[:40]!r} is not a number") from None
            if size == -1:
                return Reply(text=None, error="(nil)")
            if size < 0:
                raise ProbeProtocolError(f"{self.what}: bulk length {size} is negative")
            if size > self.cap:
                raise ProbeResponseTooLarge(
                    f"{self.what}: the server announced a {size}-byte reply, over the cap of {self.cap} bytes"
                )
            while len(self.buffer) < size + 2:
                self._fill()
            body, self.buffer = self.buffer[:size], self.buffer[size + 2 :]
            return Reply(text=body.decode("utf-8", "replace"), error=None)
        raise ProbeProtocolError(f"{self.what}: not a Redis reply: {line[:40]!r}")
