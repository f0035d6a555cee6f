"""Turn an `Inventory` into a starting profile: YAML text, commented wherever a human must decide.

Everything declared is what the host showed, so the profile certifies the host as it is; what cannot be
declared so that it holds (a port bound on several addresses, a unit systemd-analyze finds fault with, a
timer whose job never ran, an env file assigning a key twice) is written as a commented-out block with the
reason. Values of secret-named env keys, and passwords inside URLs, are never written: such keys are
declared present (``keys:``) and datastore passwords are secret variables read from the environment.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field

from conformance.envfile import parse_env
from conformance.init.observe import WILDCARDS, Answer, Inventory, Socket, Unit
from conformance.redact import is_secret_key

_URL_CREDENTIALS = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:[^@\s/]+@")
_PG_URL = re.compile(
    r"postgres(?:ql)?(?:\+\w+)?://(?P<user>[^:/@\s]+)(?::[^@\s/]*)?@(?P<host>[^:/\s]+)(?::(?P<port>\d+))?/(?P<db>[\w.-]+)"
)
_CALENDAR = re.compile(r"OnCalendar=([^;]+?)\s*;")
_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d|w)")
_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1, "min": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_BODY = 512
UNKNOWN_HOST = "gates-unknown-host.invalid"
EPHEMERAL = 32768  # Linux's default ip_local_port_range starts here


def q(text: str) -> str:
    """A YAML scalar for ``text`` as written (``$`` doubled: the profile reads ``${...}`` as a variable)."""
    return json.dumps(text.replace("$", "$$"))


# Plain words YAML 1.1 reads as something other than a string.
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def name_of(text: str) -> str:
    """A profile name (``^[a-z][a-z0-9-]*$``, never a word YAML reads as a boolean) from a unit or program name."""
    base = re.sub(r"\.(service|timer)$", "", text).lower()
    base = re.sub(r"[^a-z0-9]+", "-", base).strip("-")
    return base if base and base[0].isalpha() and base not in _YAML_WORDS else f"s-{base}".rstrip("-")


def key(text: str) -> str:
    """An env key as a YAML mapping key (quoted where YAML would read it as a boolean or null)."""
    return q(text) if text.lower() in _YAML_WORDS else text


def seconds(span: str) -> int | None:
    """Whole seconds of a systemd time span (``2min``, ``0``); None when unreadable."""
    text = span.strip()
    if text == "0":
        return 0
    parts = _SPAN.findall(text)
    return round(sum(float(n) * _SECONDS[u] for n, u in parts)) if parts else None


@dataclass(slots=True)
class Block:
    """Lines of one YAML list item or section, with comments; ``off`` writes it commented out."""

    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    off: str | None = None


@dataclass(slots=True)
class Service:
    """A service being declared, before it is written."""

    socket: Socket
    name: str
    kind: str
    block: Block = field(default_factory=Block)
    env_file: str | None = None


def _kind(inv: Inventory, sock: Socket) -> str:
    if sock.port == 5432 or sock.program.startswith("postgres"):
        return "postgres"
    if sock.port == 6379 or sock.program.startswith("redis"):
        return "redis"
    if inv.answer(sock.port, "/") is not None or inv.answer(sock.port, "/health") is not None:
        caddy = inv.caddy[1] if inv.caddy is not None else None
        serves_sites = (
            caddy is not None and bool(caddy.routes) and sock.port in (caddy.site_ports or (sock.port,))
        )
        return "proxy" if sock.program == "caddy" and serves_sites else "http"
    return "tcp"


def _health(ans: Answer, path: str, lines: list[str], notes: list[str]) -> None:
    r = ans.first
    parts = [f"method: GET, path: {path}, status: {r.status}"]
    text = r.body.decode("utf-8", errors="strict") if _is_text(r.body) else None
    if ans.stable and text is not None and len(r.body) <= MAX_BODY:
        parts.append(f"body: {q(text)}")
        notes.append(
            f"health: the body is what {path} answered twice in a row; keep it only if it is constant"
        )
    else:
        notes.append(
            f"health: {path} answered a body that changed, was not text or was long: declare what must hold"
        )
    if r.media_type:
        parts.append(f"contentType: {q(r.media_type)}")
    lines.append("health: {" + ", ".join(parts) + "}")


def _is_text(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class Drafter:
    """Builds the profile text from one inventory."""

    def __init__(self, inv: Inventory, *, name: str) -> None:
        self.inv = inv
        self.name = name
        self.variables: list[str] = []
        self.services: list[Service] = []
        self.env_blocks: list[Block] = []
        self.env_names: dict[str, str] = {}  # path -> envFiles name
        self.env_off: set[str] = set()  # names of env files written commented out
        self.release: tuple[str, str] | None = self._release()

    # --- release ---------------------------------------------------------------------------

    def _release(self) -> tuple[str, str] | None:
        for path, state in self.inv.paths:
            if not state.is_symlink or state.kind != "dir" or not state.resolved:
                continue
            parent = posixpath.dirname(state.resolved)
            if posixpath.basename(path) == "current" or posixpath.basename(parent) == "releases":
                return path, parent
        return None

    def _runs_from_release(self, sock: Socket) -> bool:
        if self.release is None or not sock.processes:
            return False
        state = self.inv.path(self.release[0])
        resolved = (state.resolved if state else "") or ""
        return bool(resolved) and all(
            (p.cwd + "/").startswith(resolved.rstrip("/") + "/") for p in sock.processes
        )

    # --- services --------------------------------------------------------------------------

    def _name(self, sock: Socket, kind: str) -> str:
        taken = {s.name for s in self.services}
        preferred = {"postgres": "postgres", "redis": "redis", "proxy": "reverse-proxy"}.get(kind)
        by_program = f"{name_of(sock.program or 'listener')}-{sock.port}"
        for c in (preferred, name_of(sock.unit) if sock.unit else None, by_program):
            if c and c not in taken:
                return c
        return f"{by_program}-{len(taken)}"

    def add_service(self, sock: Socket) -> None:
        kind = _kind(self.inv, sock)
        svc = Service(socket=sock, name=self._name(sock, kind), kind=kind)
        self.services.append(svc)
        b = svc.block
        users = sorted({p.user for p in sock.processes})
        who = (
            f"{sock.program or 'unknown program'} (pid {', '.join(str(p.pid) for p in sock.processes) or '?'}"
            + (f", user {', '.join(users)})" if users else ")")
        )
        b.notes.append(f"port {sock.port}: {who}" + (f", unit {sock.unit}" if sock.unit else ""))
        if not sock.processes:
            b.notes.append("its process is not visible here (another PID namespace, or not run as root)")
        if sock.port >= EPHEMERAL:
            b.notes.append(f"port {sock.port} is in the ephemeral range: a temporary listener or a forward? "
                           "delete this service unless it is part of the deployment")  # fmt: skip
        b.lines += [f"name: {svc.name}", f"kind: {kind}"]
        if len(sock.addresses) > 1:
            b.off = (f"port {sock.port} is bound on {', '.join(sock.addresses)}: decide which address is intended, "
                     "bind the service to it alone, and declare it here")  # fmt: skip
        bind = sock.addresses[0]
        b.lines += [f"bind: {q(bind)}", f"port: {sock.port}"]
        if bind in WILDCARDS and b.off is None:
            b.notes.append(f"bind: it listens on every address ({bind}); keep this only if it must be reachable "
                           "from other hosts, else bind it to 127.0.0.1 and change this")  # fmt: skip
        self._identity(svc, users)
        if kind == "http":
            self._http(svc)
        elif kind == "postgres":
            self._postgres(svc)
        elif kind == "redis":
            self._redis(svc)
        if self._runs_from_release(sock):
            b.lines.append("runsFromRelease: true")

    def _identity(self, svc: Service, users: list[str]) -> None:
        sock, b = svc.socket, svc.block
        unit = self.inv.unit(sock.unit) if sock.unit and self.inv.systemd else None
        if unit is not None and unit.verify is not None:
            b.notes.append(f"unit: {unit.name} is not declared: systemd-analyze verify reports "
                           f"{' | '.join(unit.verify[:2])[:200]}; declare unit: {unit.name} once it is clean")  # fmt: skip
            unit = None
        state = (unit.info.get("UnitFileState"), unit.info.get("ActiveState")) if unit is not None else None
        if unit is not None and state != ("enabled", "active"):
            b.notes.append(f"unit: {unit.name} is not declared: it is {'/'.join(state or ())}, where the unit checks "
                           "expect enabled/active; declare it once it is, or declare the unit that starts it")  # fmt: skip
            unit = None
        if unit is not None:
            b.lines.append(f"unit: {q(unit.name)}")
            if b.off is None:
                self._env_file(svc, unit)
            hardening = [(k, unit.info.get(k)) for k in unit.files.hardening_keys() if unit.info.get(k)]
            if hardening:
                b.lines.append("hardening: {" + ", ".join(f"{k}: {q(v)}" for k, v in hardening) + "}")
            unit_user = unit.info.get("User") or "root"
            if users and users != [unit_user]:
                b.notes.append(f"user: {unit.name} says User={unit_user} but port {sock.port} is held by "
                               f"{', '.join(users)}: declare the intended user")  # fmt: skip
                return
            b.lines.append(f"user: {q(unit_user)}")
            if unit.info.get("Group"):
                b.lines.append(f"group: {q(unit.info.get('Group'))}")
        elif len(users) == 1:
            b.lines.append(f"user: {q(users[0])}")

    def _env_file(self, svc: Service, unit: Unit) -> None:
        for path in unit.info.environment_files():  # as systemd expanded them (%i, ...)
            if path in self.env_names:
                if self.env_names[path] not in self.env_off:
                    svc.env_file = svc.env_file or self.env_names[path]
                continue
            if self.inv.env_text(path) is None:
                continue
            name = self._env_name(svc.name)
            self.env_names[path] = name
            if not self._declare_env(name, path):
                self.env_off.add(name)
            elif svc.env_file is None:
                svc.env_file = name
        if svc.env_file:
            svc.block.lines.append(f"envFile: {svc.env_file}")

    def _env_name(self, base: str) -> str:
        taken = set(self.env_names.values())
        name, n = base, 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        return name

    def _declare_env(self, name: str, path: str) -> bool:
        text = self.inv.env_text(path) or ""
        parsed = parse_env(text)
        b = Block(lines=[f"name: {name}", f"path: {q(path)}"])
        dupes = parsed.duplicates()
        if dupes:
            b.off = f"{path} assigns {', '.join(sorted(dupes))} more than once (the last wins): fix it, then declare it"
        values, keys = [], []
        for k, value in parsed.effective().items():
            if value and (is_secret_key(k) or _URL_CREDENTIALS.search(value)):
                keys.append(k)
            else:
                values.append(f"  {key(k)}: {q(value)}")
        if values:
            b.lines += ["values:", *values]
        if keys:
            b.lines.append(f"keys: [{', '.join(key(k) for k in keys)}]")
            b.notes.append(
                f"keys: the values of {', '.join(keys)} are secret: only their presence is declared"
            )
        b.notes.append("values: as the file holds them now; delete the ones that may change without a review")
        self.env_blocks.append(b)
        return b.off is None

    def _http(self, svc: Service) -> None:
        port, b = svc.socket.port, svc.block
        health = self.inv.answer(port, "/health")
        if health is not None and 200 <= health.first.status < 400:
            _health(health, "/health", b.lines, b.notes)
            return
        root = self.inv.answer(port, "/")
        if root is not None and root.first.status >= 400:
            b.notes.append(f"health: it answers HTTP, but neither /health nor / with 2xx or 3xx (/ answered "
                           f"{root.first.status}): declare its health endpoint")  # fmt: skip
        elif root is not None:
            b.notes.append(
                "health: no /health answered 2xx or 3xx, so / is used: declare the real health endpoint"
            )
            _health(root, "/", b.lines, b.notes)

    def _postgres(self, svc: Service) -> None:
        b, port = svc.block, svc.socket.port
        found = None
        for _, text in self.inv.env_files:
            for value in parse_env(text or "").effective().values():
                m = _PG_URL.search(value)
                if m and int(m.group("port") or 5432) == port:
                    found = (m.group("db"), m.group("user"))
                    break
            if found:
                break
        database, user = found or ("postgres", "postgres")
        if found is None:
            b.notes.append(
                "database, dbUser: no env file names a database on this port: declare the application's"
            )
        else:
            b.notes.append("database, dbUser: as a DATABASE_URL in an env file names them")
        b.lines += [f"database: {q(database)}", f"dbUser: {q(user)}", "password: ${postgres.password}"]
        self.variables.append(
            'postgres.password: {default: "", secret: true, env: GATES_POSTGRES_PASSWORD, '
            f'description: "Password of the {user} role (never written here)."}}'
        )

    def _redis(self, svc: Service) -> None:
        if dict(self.inv.redis_auth).get(svc.socket.port):
            svc.block.lines.append("password: ${redis.password}")
            svc.block.notes.append("password: Redis asks for one: set GATES_REDIS_PASSWORD")
            self.variables.append(
                'redis.password: {default: "", secret: true, env: GATES_REDIS_PASSWORD, '
                'description: "The Redis password."}'
            )
