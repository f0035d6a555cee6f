"""Write the drafted profile as YAML: services, env files, routes, timers, release, with their comments."""

from __future__ import annotations

import re
from collections.abc import Sequence

from conformance.init.draft import MAX_BODY, UNKNOWN_HOST, Block, Drafter, Service, name_of, q, seconds
from conformance.init.observe import MAX_PORTS, Inventory

_CALENDAR = re.compile(r"OnCalendar=([^;]+?)\s*;")


def _item(block: Block, indent: str = "  ") -> list[str]:
    """A list item: notes as comments, then its lines (all commented out when the block is off)."""
    out = [f"{indent}# {n}" for n in block.notes]
    body = [f"{indent}- {block.lines[0]}", *(f"{indent}  {line}" for line in block.lines[1:])]
    if block.off is not None:
        out.append(f"{indent}# NOT DECLARED: {block.off}")
        body = [f"{indent}# {line[len(indent) :]}" for line in body]
    return out + body


def _section(key: str, blocks: Sequence[Block]) -> list[str]:
    """``key:`` and its items; with every item commented out, the key is too (an empty list is no list)."""
    if not blocks:
        return []
    head = f"{key}:" if any(b.off is None for b in blocks) else f"# {key}: (nothing could be declared)"
    return [head, *(line for b in blocks for line in _item(b))]


def _identities(d: Drafter, upstreams: Sequence[Service]) -> None:
    """Give each route upstream the identity path (``/``) when its stable answer tells it apart from the others."""
    prints = {}
    for svc in upstreams:
        ans = d.inv.answer(svc.socket.port, "/")
        prints[svc.name] = ans.first.fingerprint() if ans is not None and ans.stable else None
    for svc in upstreams:
        mine = prints[svc.name]
        if mine is not None and list(prints.values()).count(mine) == 1:
            svc.block.lines.append("identity: {path: /}")
        else:
            svc.block.notes.append("identity: its answer to / is not its own (it changes, or another upstream gives "
                                   "the same): declare a path only it answers, to prove routes reach it")  # fmt: skip


def routes(d: Drafter) -> list[str]:
    """The reverse proxy's host routes read from its Caddyfile, each to a declared service."""
    if d.inv.caddy is None:
        return []
    conf, caddy = d.inv.caddy
    proxy = next((s for s in d.services if s.kind == "proxy" and s.block.off is None), None)
    if proxy is None or not caddy.routes:
        return []
    out = ["routes:", f"  # read from {conf} ({len(caddy.routes)} host routes)", f"  proxy: {proxy.name}"]
    unknown = d.inv.answer(proxy.socket.port, "/", UNKNOWN_HOST)
    if unknown is not None:
        r = unknown.first
        body = r.body.decode("utf-8", errors="replace")
        parts = [f"host: {UNKNOWN_HOST}", f"status: {r.status}"]
        if unknown.stable and len(r.body) <= MAX_BODY:
            parts.append(f"body: {q(body)}")
        out.append(
            "  # unknownHost: what the proxy answered a Host it has no route for"
            + (
                "; a 2xx means it serves unknown hosts: decide whether that is intended"
                if r.status < 300
                else ""
            )
        )
        out.append("  unknownHost: {" + ", ".join(parts) + "}")
    out.append("  hosts:")
    upstreams: list[Service] = []
    names: set[str] = set()
    for route in caddy.routes:
        svc = next((s for s in d.services if s.socket.port == route.upstream_port and s.block.off is None
                    and s.kind == "http"), None)  # fmt: skip
        if svc is None:
            out.append(f"    # {route.host} -> {route.upstream_address}:{route.upstream_port}: no declared HTTP service "
                       "listens there, so the route is not declared")  # fmt: skip
            continue
        label = name_of(route.host.split(".", 1)[0])
        name = label if label not in names else name_of(route.host)
        names.add(name)
        named = f"name: {name}, " if name != route.host.split(".", 1)[0] else ""
        out.append(f"    - {{{named}host: {q(route.host)}, upstream: {svc.name}}}")
        if svc not in upstreams:
            upstreams.append(svc)
    if not upstreams:
        return []
    _identities(d, upstreams)
    return out


def timers(d: Drafter) -> list[str]:
    """The administrator's timers: calendar, randomized delay, and whether their job has run successfully."""
    blocks: list[Block] = []
    for timer, service in d.inv.timers:
        calendars = _CALENDAR.findall(timer.info.get("TimersCalendar"))
        b = Block(
            lines=[f"name: {name_of(timer.name)}", f"unit: {q(timer.name)}", f"service: {q(service.name)}"]
        )
        if len(calendars) == 1:
            b.lines.append(f"onCalendar: {q(calendars[0])}")
        delay = seconds(timer.info.get("RandomizedDelayUSec"))
        if delay is not None:
            b.lines.append(f"randomizedDelaySeconds: {delay}")
        ran = bool(service.info.get("ExecMainExitTimestamp").strip())
        ok = ran and service.info.get("Result") == "success" and service.info.get("ExecMainStatus") == "0"
        state = (timer.info.get("UnitFileState"), timer.info.get("ActiveState"))
        if len(calendars) != 1:
            b.off = (
                f"{timer.name} has {len(calendars)} calendar triggers (only one OnCalendar= can be declared)"
            )
        elif state != ("enabled", "active"):
            b.off = f"{timer.name} is {state[0]} and {state[1]}: enable and start it, then declare it"
        elif not ok:
            b.off = (
                f"{service.name} has never run"
                if not ran
                else f"{service.name} last ran with Result={service.info.get('Result')}, "
                f"status {service.info.get('ExecMainStatus')}"
            ) + ": run it successfully once, then declare it"
        else:
            b.notes.append(
                "output: if the job writes a file, declare output: {glob, maxAgeSeconds} to certify it is fresh"
            )
        blocks.append(b)
    return _section("timers", blocks)


def release(d: Drafter) -> list[str]:
    """The runtime symlink the services run from, when one was found."""
    if d.release is None:
        return []
    current, releases = d.release
    return ["# the runtime symlink the services' working directories go through; a deploy must switch it atomically",
            "release:", f"  current: {q(current)}", f"  releases: {q(releases)}"]  # fmt: skip


def header(inv: Inventory, name: str, gates: Sequence[str], left_out: Sequence[str]) -> list[str]:
    """The document head: what wrote it, how to use it, the gates it is certified by."""
    out = [
        f"# A starting profile written by `gates init --target {inv.target}` from what the host showed.",
        "# It certifies the host as it is now: read every comment, keep what is intended, fix what is not,",
        "# then certify with: gates run --profile THIS_FILE --target ...",
        "schemaVersion: gates.profile/v1",
        f"name: {q(name)}",
        f"title: {q(name + ' (written by gates init)')}",
    ]
    if len(inv.sockets) >= MAX_PORTS:
        out.append(
            f"# only the lowest {MAX_PORTS} listening ports were looked at: declare the others by hand"
        )
    for line in left_out:
        out.append(f"# {line}")
    out.append(f"gates: [{', '.join(gates)}]")
    out.append(f"processManager: {'systemd' if inv.systemd else 'none'}")
    if inv.containers:
        out.append("containerRuntime: allowed  # a container runtime runs on the host")
    else:
        out.append(
            "# no container runtime was found: keep forbidden if the services must run as host processes"
        )
        out.append("containerRuntime: forbidden")
    return out


def sections(d: Drafter) -> list[str]:
    """Everything below the head (computed once: routes give their upstreams identity paths)."""
    route_lines = routes(d)
    timer_lines = timers(d)
    out: list[str] = []
    if d.variables:
        out += ["variables:", *(f"  {v}" for v in dict.fromkeys(d.variables))]
    out.append("services:")
    for svc in d.services:
        out += _item(svc.block)
    out += _section("envFiles", d.env_blocks)
    return out + route_lines + timer_lines + release(d)


def document(d: Drafter, body: Sequence[str], gates: Sequence[str], left_out: Sequence[str] = ()) -> str:
    """The whole profile text."""
    return "\n".join([*header(d.inv, d.name, gates, left_out), *body]) + "\n"
