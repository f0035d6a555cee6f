"""Unit tests for `conformance.probes.net`: parsing /proc/net/tcp{,6} and reading the local host's listeners."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from conformance.probes.base import Context
from conformance.probes.net import Listener, ListenSockets, ListenTable, parse_proc_net
from conformance.profile import ProbeSettings
from conformance.targets import make_host

TCP_HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
)
TCP6_HEADER = (
    "  sl  local_address                         remote_address                        st tx_queue rx_queue "
    "tr tm->when retrnsmt   uid  timeout inode\n"
)


def row4(n: int, local: str, state: str, inode: int, remote: str = "00000000:0000") -> str:
    """One /proc/net/tcp row."""
    return (
        f"   {n}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000  1000        0 {inode} 1 "
        "0000000000000000 100 0 0 10 0\n"
    )


def row6(n: int, local: str, state: str, inode: int) -> str:
    """One /proc/net/tcp6 row."""
    remote = "00000000000000000000000000000000:0000"
    return (
        f"   {n}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000  1000        0 {inode} 1 "
        "0000000000000000 100 0 0 10 0\n"
    )


class TestParseProcNet:
    """`parse_proc_net` keeps LISTEN rows and decodes their address, port and inode."""

    def test_ipv4_loopback(self) -> None:
        """0100007F:1F40 decodes to 127.0.0.1 port 8000."""
        text = TCP_HEADER + row4(0, "0100007F:1F40", "0A", 1111)
        assert parse_proc_net(text, v6=False) == [Listener(address="127.0.0.1", port=8000, inode=1111)]

    def test_ipv4_any(self) -> None:
        """00000000 decodes to 0.0.0.0."""
        text = TCP_HEADER + row4(0, "00000000:1F98", "0A", 2222)
        assert parse_proc_net(text, v6=False) == [Listener(address="0.0.0.0", port=8088, inode=2222)]

    def test_ipv4_other_address(self) -> None:
        """Each 4-byte word is little-endian, so 0101A8C0 is 192.168.1.1."""
        text = TCP_HEADER + row4(0, "0101A8C0:0050", "0A", 3)
        assert parse_proc_net(text, v6=False)[0].address == "192.168.1.1"

    def test_only_listen_rows(self) -> None:
        """Rows in any state other than 0A (LISTEN) are ignored."""
        text = (
            TCP_HEADER
            + row4(0, "0100007F:1F40", "0A", 10)
            + row4(1, "0100007F:1F40", "01", 11, remote="0100007F:D431")
            + row4(2, "0100007F:1F41", "06", 12, remote="0100007F:D432")
            + row4(3, "0100007F:1F42", "08", 13, remote="0100007F:D433")
        )
        assert [(x.port, x.inode) for x in parse_proc_net(text, v6=False)] == [(8000, 10)]

    def test_header_and_short_lines_skipped(self) -> None:
        """The header line, blank lines and truncated rows produce no listeners."""
        text = TCP_HEADER + "\n   0: 0100007F:1F40 00000000:0000 0A\n"
        assert parse_proc_net(text, v6=False) == []

    def test_empty_table(self) -> None:
        """A table with only its header has no listeners."""
        assert parse_proc_net(TCP_HEADER, v6=False) == []
        assert parse_proc_net("", v6=False) == []

    def test_ipv6_any(self) -> None:
        """An all-zero IPv6 address decodes to ::."""
        text = TCP6_HEADER + row6(0, "00000000000000000000000000000000:1F40", "0A", 44)
        assert parse_proc_net(text, v6=True) == [Listener(address="::", port=8000, inode=44)]

    def test_ipv6_loopback(self) -> None:
        """00000000000000000000000001000000 decodes to ::1."""
        text = TCP6_HEADER + row6(0, "00000000000000000000000001000000:1F40", "0A", 45)
        assert parse_proc_net(text, v6=True)[0].address == "::1"

    def test_ipv4_mapped(self) -> None:
        """An IPv4-mapped ::ffff:127.0.0.1 listener is reported as 127.0.0.1."""
        text = TCP6_HEADER + row6(0, "0000000000000000FFFF00000100007F:1F40", "0A", 46)
        assert parse_proc_net(text, v6=True) == [Listener(address="127.0.0.1", port=8000, inode=46)]

    def test_ipv6_global(self) -> None:
        """Each 4-byte word of a tcp6 address is little-endian."""
        # 2001:db8::1 -> words 20010db8 00000000 00000000 00000001, each stored byte-reversed
        text = TCP6_HEADER + row6(0, "B80D0120000000000000000001000000:0050", "0A", 47)
        assert parse_proc_net(text, v6=True)[0].address == "2001:db8::1"

    def test_ipv6_skips_non_listen(self) -> None:
        """tcp6 rows in a state other than LISTEN are ignored."""
        text = TCP6_HEADER + row6(0, "00000000000000000000000001000000:1F40", "01", 48)
        assert parse_proc_net(text, v6=True) == []


class TestListenTable:
    """`ListenTable.on_port` selects the listeners of one port."""

    def test_on_port_sorted(self) -> None:
        """Listeners of the port are returned sorted by address, others are left out."""
        table = ListenTable(
            listeners=(
                Listener(address="::", port=80, inode=3),
                Listener(address="127.0.0.1", port=80, inode=2),
                Listener(address="127.0.0.1", port=81, inode=1),
            )
        )
        assert [x.address for x in table.on_port(80)] == ["127.0.0.1", "::"]
        assert table.on_port(82) == ()


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A TCP socket listening on 127.0.0.1 at an ephemeral port, closed after the test."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]
    finally:
        sock.close()


class TestListenSockets:
    """`ListenSockets.observe` reads the listening sockets of the local host."""

    def test_sees_own_listener(self, listening_port: int) -> None:
        """A socket this test listens on shows up with its exact bind address and port."""
        ctx = Context(settings=ProbeSettings(), host=make_host("local"))
        table = ListenSockets().observe(ctx)
        found = table.on_port(listening_port)
        assert [x.address for x in found] == ["127.0.0.1"]
        assert found[0].inode > 0

    def test_bound_socket_not_listed(self) -> None:
        """A socket that is bound but not listening does not appear as a listener."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            ctx = Context(settings=ProbeSettings(), host=make_host("local"))
            assert ListenSockets().observe(ctx).on_port(port) == ()
        finally:
            sock.close()
