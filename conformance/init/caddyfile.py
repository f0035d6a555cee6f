"""Host routes read from a Caddyfile: which Host each site block or ``host`` matcher sends to which upstream.

Only what `gates init` needs is understood: site addresses (``app.example.com``, ``http://a.example.com:8088``,
``:8088``), named ``host`` matchers (``@app host app.example.com`` or a ``@app { host ... }`` block) used by
``handle @app {...}`` or ``reverse_proxy @app ...``, and the first upstream of ``reverse_proxy``. Snippets,
imports and placeholders are not expanded; a route that uses them is simply not found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|`([^`]*)`|(\{|\})|([^\s{}"`]+)')


@dataclass(frozen=True, slots=True, kw_only=True)
class CaddyRoute:
    """A Host the proxy routes, and the upstream it sends it to."""

    host: str
    upstream_address: str
    upstream_port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CaddyConfig:
    """The routes of a Caddyfile and the ports its sites listen on."""

    routes: tuple[CaddyRoute, ...]
    site_ports: tuple[int, ...]


@dataclass(slots=True)
class _Block:
    words: list[str]
    children: list[_Block] = field(default_factory=list)
    braced: bool = False


def _lines(text: str) -> list[list[tuple[str, bool]]]:
    """Tokens per line as (token, is_quoted); comments dropped."""
    out = []
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw)
        tokens = []
        for m in _TOKEN.finditer(line):
            if m.group(1) is not None or m.group(2) is not None:
                tokens.append((m.group(1) if m.group(1) is not None else m.group(2), True))
            else:
                tokens.append((m.group(3) or m.group(4), False))
        if tokens:
            out.append(tokens)
    return out


def parse_blocks(text: str) -> list[_Block]:
    """The Caddyfile as a tree: each directive (or site address line) with its nested block."""
    root = _Block(words=[])
    stack = [root]
    for tokens in _lines(text):
        current: _Block | None = None
        for token, quoted in tokens:
            if token == "{" and not quoted:
                node = current or _Block(words=[])
                if current is None:
                    stack[-1].children.append(node)
                node.braced = True
                stack.append(node)
                current = None
            elif token == "}" and not quoted:
                if len(stack) > 1:
                    stack.pop()
                current = None
            else:
                if current is None:
                    current = _Block(words=[])
                    stack[-1].children.append(current)
                current.words.append(token)
    return root.children


def upstream_endpoint(text: str) -> tuple[str, int] | None:
    """``127.0.0.1:3100``, ``http://localhost:3100`` or ``:3100`` as (address, port); None for anything else."""
    m = re.fullmatch(r"(?:https?://)?(\[[^\]]+\]|[^:/\s]*):(\d{1,5})/?", text)
    if not m or not 0 < int(m.group(2)) < 65536:
        return None
    address = m.group(1).strip("[]") or "127.0.0.1"
    return ("127.0.0.1" if address == "localhost" else address), int(m.group(2))


def _site_address(word: str) -> tuple[str | None, int | None]:
    """(host or None, port or None) of one site address."""
    word = word.rstrip(",")
    m = re.fullmatch(r"(?:(https?)://)?([^:/\s]*)(?::(\d{1,5}))?(/.*)?", word)
    if not m:
        return None, None
    port = int(m.group(3)) if m.group(3) else (443 if m.group(1) == "https" else 80 if m.group(1) else None)
    host = m.group(2) or None
    return host, port


def _first_upstream(block: _Block) -> tuple[str, int] | None:
    """The first upstream of the first ``reverse_proxy`` in ``block`` that takes no other host matcher."""
    for child in block.children:
        if child.words and child.words[0] == "reverse_proxy":
            args = child.words[1:]
            if args and args[0].startswith("@"):
                args = args[1:]
            for arg in args:
                ep = upstream_endpoint(arg)
                if ep is not None:
                    return ep
            for sub in child.children:  # reverse_proxy { to 127.0.0.1:3100 }
                if sub.words[:1] == ["to"]:
                    for arg in sub.words[1:]:
                        ep = upstream_endpoint(arg)
                        if ep is not None:
                            return ep
        elif child.words[:1] in (["handle"], ["route"], ["handle_path"]) and len(child.words) == 1:
            found = _first_upstream(child)
            if found is not None:
                return found
    return None


def _host_matchers(site: _Block) -> dict[str, list[str]]:
    """Named matchers of a site that match on Host: ``@name host a b`` or ``@name { host a b }``."""
    out: dict[str, list[str]] = {}
    for child in site.children:
        if not child.words or not child.words[0].startswith("@"):
            continue
        name = child.words[0]
        if len(child.words) > 2 and child.words[1] == "host":
            out[name] = child.words[2:]
        for sub in child.children:
            if sub.words[:1] == ["host"]:
                out.setdefault(name, []).extend(sub.words[1:])
    return out


def parse_caddyfile(text: str) -> CaddyConfig:
    """Every Host route of the Caddyfile with its upstream, and the site ports."""
    routes: dict[str, CaddyRoute] = {}
    ports: set[int] = set()
    blocks = parse_blocks(text)
    for i, site in enumerate(blocks):
        if i == 0 and not site.words and site.braced:
            continue  # the global options block
        if not site.braced or not site.words:
            continue
        addresses = [_site_address(w) for w in site.words if w != ","]
        hosts = [h for h, _ in addresses if h]
        ports.update(p for _, p in addresses if p)
        if hosts:
            upstream = _first_upstream(site)
            for host in hosts:
                if upstream is not None and host not in routes:
                    routes[host] = CaddyRoute(
                        host=host, upstream_address=upstream[0], upstream_port=upstream[1]
                    )
            continue
        matchers = _host_matchers(site)
        for child in site.children:
            head = child.words[:1]
            if head in (["handle"], ["route"]) and len(child.words) == 2 and child.words[1] in matchers:
                upstream = _first_upstream(child)
            elif head == ["reverse_proxy"] and len(child.words) > 1 and child.words[1] in matchers:
                upstream = _first_upstream(_Block(words=[], children=[child]))
            else:
                continue
            if upstream is None:
                continue
            for host in matchers[child.words[1]]:
                if host not in routes:
                    routes[host] = CaddyRoute(
                        host=host, upstream_address=upstream[0], upstream_port=upstream[1]
                    )
    return CaddyConfig(routes=tuple(routes.values()), site_ports=tuple(sorted(ports)))


def config_path(argv: tuple[str, ...]) -> str | None:
    """The ``--config`` file of a ``caddy run`` command line (None when it names none)."""
    for i, arg in enumerate(argv):
        if arg in ("--config", "-config", "-c") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None
