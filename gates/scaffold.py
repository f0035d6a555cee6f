"""`gates init`: observe a live host through a target and print a starting profile that certifies it.

The profile is validated like any other before it is printed; its ``gates`` are ``host-inventory`` (every
requirement optional: whatever the profile declares) and each built-in gate the profile fully covers.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from conformance.errors import ConfigError
from conformance.init.draft import Drafter
from conformance.init.observe import Inventory, observe
from conformance.init.render import document, sections
from conformance.probes.base import Context
from conformance.probes.bounded import BoundedHost
from conformance.profile import ProbeSettings, Profile, load_profile
from conformance.targets import SshSpec, SshTarget, check_target, make_target, parse_target
from gates.gate import build_gate, builtin_gates, components, expand, parse_gate

INVENTORY_GATE = "host-inventory"


def inventory(target: str, settings: ProbeSettings) -> Inventory:
    """Observe the host behind ``target`` (an SSH target forwards the endpoints found, then closes).

    It observes on a thread of its own: entering a ``netns://`` namespace moves only that thread (and
    the commands it starts), never the caller's.
    """
    check_target(target)
    result: dict[str, Any] = {}

    def body() -> None:
        try:
            result["value"] = _inventory(target, settings)
        except BaseException as exc:  # handed back to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=body, name="gates-init")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    value: Inventory = result["value"]
    return value


def _inventory(target: str, settings: ProbeSettings) -> Inventory:
    spec = parse_target(target)
    base = make_target(target, connect_timeout=settings.connect_timeout_s)
    ctx = Context(settings=settings, host=BoundedHost(base.host), dial=base.dial)
    opened: list[SshTarget] = []

    def dialer(endpoints: list[tuple[str, int]]) -> Context:
        if not isinstance(spec, SshSpec):
            return ctx
        tunnel = SshTarget(spec, endpoints=endpoints, connect_timeout=settings.connect_timeout_s)
        opened.append(tunnel)
        return Context(settings=settings, host=ctx.host, dial=tunnel.dial)

    try:
        return observe(ctx, target, dialer=dialer)
    finally:
        for t in opened:
            t.close()
        base.close()


def coverage(profile: Profile) -> tuple[list[str], list[str]]:
    """The built-in gates ``profile`` fully covers, and a line per partly covered one saying what it lacks."""
    chosen, left_out = [INVENTORY_GATE], []
    for name in builtin_gates():
        doc = parse_gate(name)
        if name == INVENTORY_GATE or components(doc):
            continue
        exp = expand(build_gate(doc), profile)
        if not exp.instances:
            continue
        if exp.unmatched:
            shown = ", ".join(exp.unmatched[:3]) + (", ..." if len(exp.unmatched) > 3 else "")
            left_out.append(
                f"not listed: {name}: {len(exp.unmatched)} of its required checks have nothing declared here ({shown})"
            )
        else:
            chosen.append(name)
    return chosen, left_out


def run_init(
    target: str, name: str, out: IO[str], *, observed: Callable[[str], Inventory] | None = None
) -> int:
    """Observe, draft, validate, choose gates, print; a profile that fails its own validation is a bug (exit 3)."""
    settings = ProbeSettings()
    inv = (observed or (lambda t: inventory(t, settings)))(target)
    if not inv.sockets:
        raise ConfigError("nothing listens on any TCP port there: there is nothing to declare", source=target)
    drafter = Drafter(inv, name=name)
    for sock in inv.sockets:
        drafter.add_service(sock)
    if all(s.block.off is not None for s in drafter.services):
        raise ConfigError(
            "no listener there can be declared as it is (see 'NOT DECLARED' in the draft below); fix what it says "
            "first\n" + document(drafter, sections(drafter), [INVENTORY_GATE]),
            source=target,
        )
    body = sections(drafter)
    fd, tmp = tempfile.mkstemp(prefix="gates-init-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(document(drafter, body, [INVENTORY_GATE]))
        profile = load_profile(tmp, environ={})
        gates, left_out = coverage(profile)
        text = document(drafter, body, gates, left_out)
        Path(tmp).write_text(text)
        load_profile(tmp, environ={})
    finally:
        os.unlink(tmp)
    out.write(text)
    return 0
