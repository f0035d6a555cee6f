"""Topology: listeners, reverse-proxy routes and the release symlink match the declaration."""

from __future__ import annotations

import ipaddress
import posixpath

from conformance.checks import check, expect
from conformance.errors import ProbeError, Undetermined
from conformance.probes.files import PathInfo, PathState
from conformance.probes.http import HttpGet, HttpResponse
from conformance.probes.net import ListenSockets, ListenTable
from conformance.probes.resolve import Tolerant
from conformance.profile import Profile, Release, Service
from conformance.suite import _select
from conformance.suite._select import RouteTarget

_GATEWAY_ERRORS = (502, 503, 504)


def listen_table(_: Profile, __: Service) -> ListenSockets:
    """The host's listening sockets (one observation shared by every service)."""
    return ListenSockets()


def _covers(listen_address: str, declared: str) -> bool:
    """Whether a socket bound to ``listen_address`` accepts connections to ``declared``."""
    if listen_address == declared:
        return True
    try:
        want = ipaddress.ip_address(declared)
    except ValueError:
        return False
    if listen_address == "0.0.0.0":
        return want.version == 4
    return listen_address == "::"  # dual-stack wildcard


@check(
    "topology.listen.port_bound",
    title="Something listens on the declared address and port",
    targets=_select.all_services,
    observe=listen_table,
    remediation="Nothing accepts connections on {bind}:{port}: start {name} (systemctl start {unit}) and "
    "check its journal.",
)
def test_port_bound(target: Service, obs: ListenTable) -> None:
    """A listening socket accepts connections on the declared bind address and port."""
    found = sorted({x.address for x in obs.on_port(target.port)})
    expect(
        any(_covers(a, target.bind) for a in found),
        f"nothing listens on {target.bind}:{target.port} (listeners on port {target.port}: {found or 'none'})",
        reason="port_not_listening",
        observed=found,
        expected=[target.bind],
    )


@check(
    "topology.listen.bind_exact",
    title="The service listens only on its declared bind address",
    targets=_select.all_services,
    observe=listen_table,
    remediation="{name} also listens beyond {bind}: bind it to {bind} only (its listen/bind setting), so it is "
    "not reachable from other interfaces.",
)
def test_bind_exact(target: Service, obs: ListenTable) -> None:
    """No socket on the declared port is bound to any address other than the declared one."""
    found = sorted({x.address for x in obs.on_port(target.port)})
    extra = [a for a in found if a != target.bind]
    expect(
        not extra,
        f"port {target.port} is bound on {', '.join(extra)} besides/instead of {target.bind}",
        reason="bind_address_mismatch",
        observed=found,
        expected=[target.bind],
    )


def identity_probes(_: Profile, rt: RouteTarget) -> tuple[HttpGet, dict[str, Tolerant]]:
    """The identity path through the proxy, and the same path asked of every route upstream directly."""
    path = rt.upstream.identity_path or "/"
    routed = HttpGet(address=rt.proxy.bind, port=rt.proxy.port, path=path, host_header=rt.route.host)
    direct = {
        s.name: Tolerant(spec=HttpGet(address=s.bind, port=s.port, path=path))
        for s in (rt.upstream, *rt.others)
    }
    return routed, direct


@check(
    "proxy.route.upstream_identity",
    title="The host route reaches its declared upstream, proven by the upstream's own answer",
    targets=_select.identity_routes,
    observe=identity_probes,
    remediation="Fix the proxy route for Host {host} so that it proxies to the declared upstream, then reload "
    "the proxy.",
)
def test_route_upstream_identity(target: RouteTarget, obs: tuple[HttpResponse, dict[str, object]]) -> None:
    """The routed answer is the declared upstream's answer and no other upstream's."""
    routed, direct = obs
    want = target.upstream.name
    own = direct[want]
    if isinstance(own, ProbeError):
        expect(
            routed.status not in _GATEWAY_ERRORS,
            f"Host {target.host} through the proxy answered {routed.status}: the upstream {want} is unreachable",
            reason="route_upstream_unreachable",
            observed=routed.status,
            expected=want,
        )
        raise Undetermined(f"cannot fingerprint upstream {want} directly: {own}")
    matches = sorted(
        name
        for name, resp in direct.items()
        if isinstance(resp, HttpResponse) and resp.fingerprint() == routed.fingerprint()
    )
    observed = matches[0] if len(matches) == 1 else (matches or f"unknown answer (status {routed.status})")
    if want in matches and len(matches) > 1:
        raise Undetermined(
            f"upstreams {', '.join(matches)} answer {routed.url} identically; declare an identity "
            "path that tells them apart"
        )
    expect(
        matches == [want],
        f"Host {target.host} through the proxy reached {observed}; expected upstream {want}",
        reason="route_wrong_upstream",
        observed=observed,
        expected=want,
    )


def unknown_host_probe(profile: Profile, proxy: Service) -> HttpGet:
    """A request with a Host the proxy has no route for."""
    assert profile.routes is not None
    return HttpGet(address=proxy.bind, port=proxy.port, path="/", host_header=profile.routes.unknown_host)


@check(
    "proxy.route.unknown_host_refused",
    title="The proxy refuses a Host it has no route for",
    targets=_select.proxies,
    observe=unknown_host_probe,
    remediation="The proxy on {bind}:{port} serves unknown hosts: remove catch-all upstreams so that only "
    "declared hosts are routed.",
)
def test_unknown_host_refused(target: Service, obs: HttpResponse, profile: Profile) -> None:
    """An unknown Host gets the declared refusal (status and body), not some upstream's page."""
    assert profile.routes is not None
    want_status, want_body = profile.routes.unknown_status, profile.routes.unknown_body
    got = obs.body.decode("utf-8", errors="replace")
    ok = obs.status == want_status and (want_body is None or got == want_body)
    expect(
        ok,
        f"Host {profile.routes.unknown_host} on {target.bind}:{target.port} answered {obs.status} "
        f"{obs.body_preview(60)!r}; expected {want_status} {want_body!r}",
        reason="unknown_host_served",
        observed={"status": obs.status, "body": obs.body_preview(120)},
        expected={"status": want_status, "body": want_body},
    )


def release_paths(_: Profile, release: Release) -> tuple[PathInfo, PathInfo]:
    """The ``current`` link and the releases directory."""
    return PathInfo(path=release.current), PathInfo(path=release.releases)


@check(
    "release.current.is_symlink",
    title="The runtime path is a symlink (switched atomically), not a directory",
    targets=_select.releases,
    observe=release_paths,
    remediation="Replace {name} with a symlink into the releases directory (ln -s <release> tmp && mv -T tmp "
    "<current>).",
)
def test_current_is_symlink(target: Release, obs: tuple[PathState, PathState]) -> None:
    """The runtime code path is a symbolic link."""
    current, _ = obs
    kind = "symlink" if current.is_symlink else current.kind
    expect(
        current.is_symlink,
        f"{target.current} is a {kind}, not a symlink",
        reason="current_not_symlink",
        observed=kind,
        expected="symlink",
    )


@check(
    "release.current.target_exists",
    title="The runtime symlink resolves to an existing release directory",
    targets=_select.releases,
    observe=release_paths,
    remediation="{name} points at a release that does not exist: switch it back to an existing release "
    "(the deploy tool's rollback).",
)
def test_current_target_exists(target: Release, obs: tuple[PathState, PathState]) -> None:
    """Following the runtime path ends in an existing directory."""
    current, _ = obs
    expect(
        current.kind == "dir",
        f"{target.current} resolves to {current.resolved or current.link_text!r}, which is {current.kind}",
        reason="current_dangling",
        observed=current.kind,
        expected="dir",
    )


@check(
    "release.current.target_in_releases",
    title="The runtime symlink points at a release inside the releases directory",
    targets=_select.releases,
    observe=release_paths,
    remediation="{name} points outside the releases directory: deploy that code as a release and switch to it.",
)
def test_current_target_in_releases(target: Release, obs: tuple[PathState, PathState]) -> None:
    """The runtime path resolves to a direct child of the releases directory."""
    current, releases = obs
    parent = posixpath.dirname(current.resolved) if current.resolved else None
    expect(
        parent is not None and parent == releases.resolved,
        f"{target.current} resolves to {current.resolved!r}, not to a release under {releases.resolved!r}",
        reason="current_outside_releases",
        observed=current.resolved,
        expected=f"{releases.resolved}/<release>",
    )
