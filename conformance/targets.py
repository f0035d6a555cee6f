"""Targets: how commands, file reads and network probes reach the deployment's host.

``local`` runs commands here and connects directly. ``ssh://user@host[:port]`` runs
commands through pytest-testinfra's SSH backend, and reaches services bound to the
host's loopback through one SSH connection carrying a local port forward per endpoint,
because ``127.0.0.1`` on the host is not reachable from anywhere else.
``netns://NAME`` certifies services in the network namespace ``ip netns`` calls NAME
(``/run/netns/NAME``): the process moves into it before any probe thread starts, so every
command, socket and database client of the run sees that namespace's loopback and ports
(entering a network namespace needs CAP_SYS_ADMIN).

SSH options come from the environment: ``GATES_SSH_IDENTITY`` (private key file) and
``GATES_SSH_CONFIG`` (an ssh_config file).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import testinfra

from conformance.errors import ConfigError, ProbeUnreachable

_NETNS_URL = re.compile(r"^netns://(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]{0,63})/?$")
_NETNS_DIR = "/run/netns"
_CLONE_NEWNET = 0x40000000
_SSH_URL = re.compile(r"^ssh://(?:(?P<user>[^@/:]+)@)?(?P<host>\[[^\]]+\]|[^:/@]+)(?::(?P<port>\d+))?/?$")


class Target(Protocol):
    """A way to reach the host: a command backend and a dialer for network probes."""

    name: str
    host: Any

    def dial(self, address: str, port: int) -> tuple[str, int]:
        """Where to connect, from here, to reach ``address:port`` as seen from the host."""

    def close(self) -> None:
        """Release connections and tunnels."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SshSpec:
    """A parsed ``ssh://`` target."""

    user: str | None
    host: str
    port: int

    @property
    def url(self) -> str:
        """The testinfra host spec."""
        user = f"{self.user}@" if self.user else ""
        return f"ssh://{user}{self.host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class NetnsSpec:
    """A parsed ``netns://NAME`` target."""

    name: str

    @property
    def url(self) -> str:
        """The target as given."""
        return f"netns://{self.name}"

    @property
    def path(self) -> str:
        """The namespace's file, as ``ip netns`` keeps it."""
        return os.path.join(_NETNS_DIR, self.name)


def parse_target(target: str) -> SshSpec | NetnsSpec | None:
    """None for ``local``; an `SshSpec` for ``ssh://``, a `NetnsSpec` for ``netns://``; else a `ConfigError`."""
    if target in ("local", "local://"):
        return None
    netns = _NETNS_URL.match(target)
    if netns:
        return NetnsSpec(name=netns.group("name"))
    match = _SSH_URL.match(target)
    if not match:
        raise ConfigError(
            f"unsupported target {target!r}: use 'local', 'ssh://user@host[:port]' or 'netns://NAME'",
            source="<argument --target>",
        )
    port = int(match.group("port") or 22)
    if not 1 <= port <= 65535:
        raise ConfigError(f"port {port} out of range in {target!r}", source="<argument --target>")
    return SshSpec(user=match.group("user"), host=match.group("host").strip("[]"), port=port)


class LocalTarget:
    """The host this process runs on (``name`` says how it was reached: ``local`` or ``netns://NAME``)."""

    def __init__(self, name: str = "local") -> None:
        self.name = name
        self.host = testinfra.get_host("local://")

    def dial(self, address: str, port: int) -> tuple[str, int]:
        """Connect directly."""
        return address, port

    def close(self) -> None:
        """Nothing to release."""


def _free_local_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all held open while choosing, so none repeats)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def ssh_base_args(spec: SshSpec, *, connect_timeout: float) -> list[str]:
    """Arguments every ssh invocation of a run shares (batch mode, timeouts, identity, config)."""
    args = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, int(connect_timeout + 0.999))}",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2", "-p", str(spec.port)]  # fmt: skip
    if os.environ.get("GATES_SSH_CONFIG"):
        args += ["-F", os.environ["GATES_SSH_CONFIG"]]
    if os.environ.get("GATES_SSH_IDENTITY"):
        args += ["-i", os.environ["GATES_SSH_IDENTITY"], "-o", "IdentitiesOnly=yes"]
    return args


def forward_spec(local: int, address: str, port: int) -> str:
    """``ssh -L`` for ``address:port`` on the host at ``127.0.0.1:local`` here (an IPv6 address in brackets)."""
    host = f"[{address}]" if ":" in address else address
    return f"127.0.0.1:{local}:{host}:{port}"


class SshTarget:
    """A remote host reached over SSH, with loopback endpoints forwarded through one connection."""

    def __init__(
        self, spec: SshSpec, *, endpoints: Iterable[tuple[str, int]], connect_timeout: float
    ) -> None:
        self.spec = spec
        self.name = spec.url
        kwargs: dict[str, Any] = {
            # one multiplexed connection for every command of the run, closed soon after it
            "controlpath": os.path.join(
                tempfile.gettempdir(), f"gates-ssh-{os.getpid()}-{abs(hash(spec.url)) % 10**8}"
            ),
            "controlpersist": 5,
            "timeout": max(1, int(connect_timeout + 0.999)),
            "ssh_extra_args": "-o BatchMode=yes",
        }
        if os.environ.get("GATES_SSH_CONFIG"):
            kwargs["ssh_config"] = os.environ["GATES_SSH_CONFIG"]
        if os.environ.get("GATES_SSH_IDENTITY"):
            kwargs["ssh_identity_file"] = os.environ["GATES_SSH_IDENTITY"]
        self._control_path = str(kwargs["controlpath"])
        self.host = testinfra.get_host(spec.url, **kwargs)
        wanted = sorted(set(endpoints))
        self._error: str | None = None
        self._tunnel: subprocess.Popen[bytes] | None = None
        for _attempt in range(3):  # another process may take a chosen port before ssh binds it
            self._forwards = dict(zip(wanted, _free_local_ports(len(wanted)), strict=True))
            error = self._open(connect_timeout)
            self._error = error
            if error is None or "Address already in use" not in error:
                break

    def _open(self, connect_timeout: float) -> str | None:
        """Start the tunnel; return why it failed, or None."""
        if not self._forwards:
            return None
        argv = [
            "ssh",
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            *ssh_base_args(self.spec, connect_timeout=connect_timeout),
        ]
        for (address, port), local in self._forwards.items():
            argv += ["-L", forward_spec(local, address, port)]
        user = f"{self.spec.user}@" if self.spec.user else ""
        argv.append(f"{user}{self.spec.host}")
        self._tunnel = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
        first = next(iter(self._forwards.values()))
        deadline = time.monotonic() + connect_timeout + 10.0
        while time.monotonic() < deadline:
            if self._tunnel.poll() is not None:
                err = (
                    self._tunnel.stderr.read().decode(errors="replace").strip() if self._tunnel.stderr else ""
                )
                return (
                    f"ssh tunnel to {self.spec.url} failed: {err or 'exit ' + str(self._tunnel.returncode)}"
                )
            with socket.socket() as sock:
                sock.settimeout(0.2)
                if sock.connect_ex(("127.0.0.1", first)) == 0:
                    return None
            time.sleep(0.02)
        return f"ssh tunnel to {self.spec.url} not ready within {connect_timeout + 10.0:g}s"

    def dial(self, address: str, port: int) -> tuple[str, int]:
        """The local end of the forward for ``address:port`` on the host."""
        if self._error:
            raise ProbeUnreachable(self._error)
        local = self._forwards.get((address, port))
        if local is None:
            raise ProbeUnreachable(
                f"{address}:{port} is not forwarded through {self.spec.url} (not in the profile)"
            )
        return "127.0.0.1", local

    def close(self) -> None:
        """Stop the tunnel and the multiplexing master."""
        user = f"{self.spec.user}@" if self.spec.user else ""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["ssh", "-O", "exit", "-o", f"ControlPath={self._control_path}", *ssh_base_args(self.spec, connect_timeout=1),
                 f"{user}{self.spec.host}"],
                stdin=subprocess.DEVNULL, capture_output=True, timeout=5, check=False,
            )  # fmt: skip
        if self._tunnel is not None and self._tunnel.poll() is None:
            self._tunnel.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._tunnel.wait(timeout=5)
            if self._tunnel.poll() is None:
                self._tunnel.kill()
                self._tunnel.wait()
        if self._tunnel is not None and self._tunnel.stderr is not None:
            self._tunnel.stderr.close()


def check_target(target: str) -> None:
    """Refuse, as a `ConfigError`, a ``--target`` that is malformed or names a namespace that is not there."""
    spec = parse_target(target)
    if isinstance(spec, NetnsSpec) and not os.path.exists(spec.path):
        raise ConfigError(
            f"network namespace {spec.name!r} not found ({spec.path}); 'ip netns list' shows the namespaces there are",
            source="<argument --target>",
        )


def enter_netns(spec: NetnsSpec) -> None:
    """Move the calling thread (and every thread and process it starts later) into ``spec``'s namespace."""
    try:
        fd = os.open(spec.path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(
            f"network namespace {spec.name!r} not found ({spec.path}: {exc.strerror}); "
            "'ip netns list' shows the namespaces there are",
            source="<argument --target>",
        ) from exc
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise ConfigError(
                f"cannot enter network namespace {spec.name!r}: {os.strerror(err)}"
                + (
                    " (entering a network namespace needs root or CAP_SYS_ADMIN)"
                    if err == errno.EPERM
                    else ""
                ),
                source="<argument --target>",
            )
    finally:
        os.close(fd)


def make_target(
    target: str, *, endpoints: Iterable[tuple[str, int]] = (), connect_timeout: float = 2.0
) -> Target:
    """Build the target for ``--target`` (``local``, ``ssh://user@host[:port]`` or ``netns://NAME``).

    A ``netns://`` target moves this process's calling thread into the namespace: call it before
    starting any probe thread (threads and processes started afterwards inherit the namespace).
    """
    spec = parse_target(target)
    if spec is None:
        return LocalTarget()
    if isinstance(spec, NetnsSpec):
        enter_netns(spec)
        return LocalTarget(spec.url)
    return SshTarget(spec, endpoints=endpoints, connect_timeout=connect_timeout)


def make_host(target: str) -> Any:
    """Validate ``--target`` and return a testinfra host for it (no tunnels; a namespace is not entered)."""
    spec = parse_target(target)
    if spec is None or isinstance(spec, NetnsSpec):
        return testinfra.get_host("local://")
    return testinfra.get_host(spec.url)


__all__ = [
    "LocalTarget",
    "NetnsSpec",
    "SshSpec",
    "SshTarget",
    "Target",
    "check_target",
    "enter_netns",
    "make_host",
    "make_target",
    "parse_target",
]
