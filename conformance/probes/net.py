"""Listening TCP sockets of a host, read from ``/proc/net/tcp{,6}`` through the host backend.

Reading the kernel tables directly avoids the differences between ``ss`` and ``netstat``
versions, works the same locally and over SSH, and shows the exact bind address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from conformance.errors import ProbeError
from conformance.probes.base import Context

_LISTEN = "0A"


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    """One listening socket."""

    address: str
    port: int
    inode: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenTable:
    """Every listening TCP socket of the host."""

    listeners: tuple[Listener, ...]

    def on_port(self, port: int) -> tuple[Listener, ...]:
        """Listeners bound to ``port`` on any address."""
        return tuple(
            sorted((x for x in self.listeners if x.port == port), key=lambda x: (x.address, x.inode))
        )


def _decode_v4(hex_addr: str) -> str:
    return str(ipaddress.IPv4Address(bytes.fromhex(hex_addr)[::-1]))


def _decode_v6(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    fixed = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    addr = ipaddress.IPv6Address(fixed)
    return str(addr.ipv4_mapped) if addr.ipv4_mapped else str(addr)


def parse_proc_net(text: str, *, v6: bool) -> list[Listener]:
    """Parse the listening rows of a ``/proc/net/tcp`` or ``tcp6`` table."""
    out: list[Listener] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != _LISTEN:
            continue
        hex_addr, hex_port = fields[1].split(":")
        address = _decode_v6(hex_addr) if v6 else _decode_v4(hex_addr)
        out.append(Listener(address=address, port=int(hex_port, 16), inode=int(fields[9])))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenSockets:
    """Read the host's listening TCP sockets (IPv4 and IPv6)."""

    def observe(self, ctx: Context) -> ListenTable:
        """Run ``cat /proc/net/tcp /proc/net/tcp6`` on the host and parse both tables."""
        listeners: list[Listener] = []
        for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
            result = ctx.host.run("cat -- %s", table)
            if result.rc != 0:
                if v6:
                    continue  # a host without IPv6 has no tcp6 table
                raise ProbeError(f"cannot read {table} on the target: {result.stderr.strip()}")
            listeners += parse_proc_net(result.stdout, v6=v6)
        return ListenTable(listeners=tuple(listeners))
