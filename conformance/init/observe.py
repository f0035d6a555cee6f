"""What `gates init` looks at on the host, through the same probes and targets a check run uses.

Commands go through the target's host backend (local, ``ssh://``, ``netns://``), network probes through
its dialer; nothing here asserts anything. The result is an `Inventory`, from which `conformance.init.draft`
writes the profile.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from conformance.errors import NoSystemd, ProbeError
from conformance.init.caddyfile import CaddyConfig, config_path, parse_caddyfile
from conformance.init.unitfile import UnitSettings, parse_unit
from conformance.probes.base import Context, ProbeSpec, _guarded
from conformance.probes.datastores import RedisPing
from conformance.probes.files import PathInfo, PathState, ReadFile
from conformance.probes.http import HttpGet, HttpResponse
from conformance.probes.inventory import CatUnit, ListUnits, ReadCommandLine
from conformance.probes.net import ListenSockets
from conformance.probes.systemd import (
    FindContainerRuntimes,
    ListenerProcesses,
    ProcessInfo,
    ShowUnit,
    UnitInfo,
    VerifyUnit,
)

T = TypeVar("T")
POSTGRES_PORTS = (5432,)
REDIS_PORTS = (6379,)
WILDCARDS = ("0.0.0.0", "::")
MAX_PORTS = 200  # each port costs a few commands on the target: a host listening on thousands is cut here


@dataclass(frozen=True, slots=True, kw_only=True)
class Socket:
    """A listening port: its addresses, the processes holding it, their command line and systemd unit."""

    port: int
    addresses: tuple[str, ...]
    processes: tuple[ProcessInfo, ...]
    argv: tuple[str, ...]
    unit: str | None

    @property
    def program(self) -> str:
        """The basename of the listener's executable ("" when unknown)."""
        return posixpath.basename(self.argv[0]) if self.argv else ""

    @property
    def dial_address(self) -> str:
        """Where a client on the host connects: the bind address, or loopback for a wildcard."""
        address = self.addresses[0]
        return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address, address)


@dataclass(frozen=True, slots=True, kw_only=True)
class Unit:
    """A systemd unit: its state (``systemctl show``), its files' own settings, and what verify said."""

    name: str
    info: UnitInfo
    files: UnitSettings
    verify: tuple[str, ...] | None  # messages of a failed ``systemd-analyze verify``; None when clean


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What an HTTP path answered twice in a row (None: it did not answer HTTP)."""

    first: HttpResponse
    stable: bool  # the second answer had the same status and body


@dataclass(frozen=True, slots=True, kw_only=True)
class Inventory:
    """Everything `gates init` observed on the host."""

    target: str
    sockets: tuple[Socket, ...]
    systemd: bool
    units: tuple[Unit, ...]  # the listeners' units and the administrator's own service units
    timers: tuple[tuple[Unit, Unit], ...]  # (timer, the service it starts)
    env_files: tuple[tuple[str, str | None], ...]  # path -> text (None: missing or unreadable)
    caddy: tuple[str, CaddyConfig] | None  # the Caddyfile read, and its routes
    http: tuple[tuple[tuple[int, str, str | None], Answer], ...]  # (port, path, Host) -> answer
    redis_auth: tuple[tuple[int, bool], ...]  # redis port -> whether PING needs a password
    paths: tuple[tuple[str, PathState], ...]
    containers: bool

    def unit(self, name: str) -> Unit | None:
        """The observed unit called ``name``."""
        return next((u for u in self.units if u.name == name), None)

    def answer(self, port: int, path: str, host: str | None = None) -> Answer | None:
        """The HTTP answer of ``path`` on ``port`` (with a Host header), if it answered HTTP."""
        return next((a for k, a in self.http if k == (port, path, host)), None)

    def env_text(self, path: str) -> str | None:
        """The text of an env file, None when missing or unreadable."""
        return next((t for p, t in self.env_files if p == path), None)

    def path(self, path: str) -> PathState | None:
        """What ``path`` is, if it was looked at."""
        return next((s for p, s in self.paths if p == path), None)


def _must(ctx: Context, spec: ProbeSpec[T]) -> T:
    """Observe, any failure (a lost SSH connection, a library error) as a `ProbeError`, as a check run does."""
    return _guarded(spec, ctx)


def _get(ctx: Context, spec: ProbeSpec[T]) -> T | None:
    try:
        return _must(ctx, spec)
    except NoSystemd:
        raise
    except ProbeError:
        return None


def _unit_of(cgroup: str) -> str | None:
    parts = [p for p in cgroup.split("/") if p.endswith((".service", ".scope"))]
    return parts[-1] if parts and parts[-1].endswith(".service") else None


def sockets(ctx: Context) -> list[Socket]:
    """Every listening TCP port (the lowest `MAX_PORTS`) with its owners (one observation per port)."""
    table = _must(ctx, ListenSockets())
    out = []
    for port in sorted({x.port for x in table.listeners})[:MAX_PORTS]:
        procs = _get(ctx, ListenerProcesses(port=port)) or ()
        cmd = _get(ctx, ReadCommandLine(pid=procs[0].pid)) if procs else None
        units = sorted({u for p in procs if (u := _unit_of(p.cgroup))})
        out.append(
            Socket(
                port=port,
                addresses=tuple(sorted({x.address for x in table.on_port(port)})),
                processes=tuple(procs),
                argv=cmd.argv if cmd else (),
                unit=units[0] if len(units) == 1 else None,
            )
        )
    return out


def _unit(ctx: Context, name: str, *, verify: bool) -> Unit | None:
    info = _get(ctx, ShowUnit(unit=name))
    if info is None or not info.exists:
        return None
    files = _get(ctx, CatUnit(unit=name))
    result = _get(ctx, VerifyUnit(unit=name)) if verify else None
    clean = result is not None and result.exit_code == 0 and not result.messages
    return Unit(name=name, info=info, files=parse_unit(files.text if files else ""),
                verify=None if clean or not verify else (result.messages if result else ("not verified",)))  # fmt: skip


def _admin_units(ctx: Context, kind: str) -> list[str]:
    """Units of ``kind`` the administrator installed (their file is under /etc/systemd/system)."""
    listed = _must(ctx, ListUnits(kind=kind))
    out = []
    for name in listed.units:
        info = _get(ctx, ShowUnit(unit=name))
        if info is not None and info.get("FragmentPath").startswith("/etc/systemd/system/"):
            out.append(name)
    return out


def _http(ctx: Context, address: str, port: int, path: str, host: str | None) -> Answer | None:
    spec = HttpGet(address=address, port=port, path=path, host_header=host)
    try:
        first = _must(ctx, spec)
        second = _must(ctx, spec)
    except ProbeError:
        return None
    return Answer(first=first, stable=first.fingerprint() == second.fingerprint())


def _release_paths(units: list[Unit], socks: list[Socket]) -> list[str]:
    """Candidate runtime symlinks: ancestors of the units' working directories, ``<root>/current`` of
    processes that run from ``<root>/releases/<id>``."""
    out: list[str] = []
    for unit in units:
        wd = unit.info.get("WorkingDirectory").lstrip("!-")
        while wd not in ("", "/"):
            out.append(wd)
            wd = posixpath.dirname(wd)
    for sock in socks:
        for proc in sock.processes:
            parts = proc.cwd.split("/")
            if "releases" in parts:
                root = "/".join(parts[: parts.index("releases")])
                out.append(posixpath.join(root or "/", "current"))
    return sorted(set(out))


def observe(
    ctx: Context, target: str, *, dialer: Callable[[list[tuple[str, int]]], Context] | None = None
) -> Inventory:
    """Observe the host. ``dialer`` turns the endpoints to probe into a context that reaches them (an SSH
    target forwards only endpoints named up front); without it ``ctx`` dials them itself."""
    socks = sockets(ctx)
    try:
        listed = [s.unit for s in socks if s.unit]
        names = sorted(set(listed) | set(_admin_units(ctx, "service")))
        units = [u for n in names if (u := _unit(ctx, n, verify=True)) is not None]
        timers = []
        for name in _admin_units(ctx, "timer"):
            timer = _unit(ctx, name, verify=False)
            if timer is None:
                continue
            started = timer.files.last("Timer.Unit") or name.removesuffix(".timer") + ".service"
            service = _unit(ctx, started, verify=False)
            if service is not None:
                timers.append((timer, service))
        systemd = True
    except NoSystemd:
        units, timers, systemd = [], [], False
    env_paths = sorted({path for u in units for path in u.info.environment_files()})
    env_files = []
    for path in env_paths:
        content = _get(ctx, ReadFile(path=path))
        env_files.append((path, content.text if content is not None and content.readable else None))
    caddy = None
    for sock in socks:
        if sock.program == "caddy":
            unit = next((u for u in units if u.name == sock.unit), None)
            argv = sock.argv
            if config_path(argv) is None and unit is not None:
                argv = tuple((unit.files.last("Service.ExecStart") or "").split())
            conf = config_path(argv) or "/etc/caddy/Caddyfile"
            content = _get(ctx, ReadFile(path=conf))
            if content is not None and content.text is not None and not conf.endswith(".json"):
                caddy = (conf, parse_caddyfile(content.text))
            break
    endpoints = sorted({(s.dial_address, s.port) for s in socks})
    net = dialer(endpoints) if dialer is not None else ctx
    http: list[tuple[tuple[int, str, str | None], Answer]] = []
    redis: list[tuple[int, bool]] = []
    for sock in socks:
        if sock.port in POSTGRES_PORTS or sock.program.startswith("postgres"):
            continue
        if sock.port in REDIS_PORTS or sock.program.startswith("redis"):
            reply = _get(net, RedisPing(address=sock.dial_address, port=sock.port))
            redis.append((sock.port, reply is not None and "NOAUTH" in (reply.error or "")))
            continue
        for path, host in (("/health", None), ("/", None), ("/", "gates-unknown-host.invalid")):
            if host is not None and (caddy is None or sock.program != "caddy"):
                continue
            answer = _http(net, sock.dial_address, sock.port, path, host)
            if answer is None:
                break
            http.append(((sock.port, path, host), answer))
    paths = [(p, s) for p in _release_paths(units, socks) if (s := _get(ctx, PathInfo(path=p))) is not None]
    runtimes = _get(ctx, FindContainerRuntimes())
    return Inventory(
        target=target,
        sockets=tuple(socks),
        systemd=systemd,
        units=tuple(units),
        timers=tuple(timers),
        env_files=tuple(env_files),
        caddy=caddy,
        http=tuple(http),
        redis_auth=tuple(redis),
        paths=tuple(paths),
        containers=runtimes is None or bool(runtimes.processes or runtimes.sockets),
    )
