"""The health-dependency drill as a profile declares it: which dependency each health answer must depend on.

A profile's ``healthDrill`` names, for each dependency (a declared service), how to take it away for a
moment and which dependents' health answers must stop being green while it is away:

- ``unit``: ``systemctl stop UNIT``, then ``systemctl start UNIT``;
- ``command``: a stop and a start shell command on the target;
- ``freeze``: SIGSTOP to the processes listening on the dependency's port (and their descendants), then
  SIGCONT. Its clients see exactly what a blocked port shows them -- connections that hang, never a reset --
  so a client that dies on a reset (upstream Nooterra's pool, ``src/db/pg.js:94-97``) survives, and nothing
  has to be restarted afterwards.

A dependent is a service with a declared health answer (asked directly) or a proxy route (its upstream's
health asked through the proxy with the route's Host). The drill runs only where the operator declares the
deployment disposable (``disposable: true``) and the run allows drills.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from conformance.profile import Routes, Service

PathKey = tuple[str | int, ...]
Method = Literal["unit", "command", "freeze"]
METHODS: tuple[Method, ...] = ("unit", "command", "freeze")
TRUE = frozenset({"true", "yes", "1", "on"})
FALSE = frozenset({"false", "no", "0", "off", ""})


class _Resolver(Protocol):
    def text(self, raw: Any, path: PathKey) -> str: ...

    def integer(self, raw: Any, path: PathKey, *, low: int, high: int) -> int: ...

    def fail(self, path: PathKey, message: str) -> Exception: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Dependent:
    """A health answer that must notice the dependency going away."""

    name: str  # the service or route name
    via_route: bool  # True: the route's upstream health, asked through the proxy with the route's Host
    bound_s: int  # seconds within which the answer must stop being green


@dataclass(frozen=True, slots=True, kw_only=True)
class Dependency:
    """One dependency, how it is taken away and put back, and whose health must notice."""

    service: str  # a declared service
    method: Method
    unit: str = ""
    stop: str = ""
    start: str = ""
    dependents: tuple[Dependent, ...] = ()

    @property
    def name(self) -> str:
        """The dependency's name: the target of its restore check."""
        return self.service


@dataclass(frozen=True, slots=True, kw_only=True)
class Pair:
    """A dependent and one of its dependencies: the target of ``health.dependency.noticed``."""

    dependency: Dependency
    dependent: Dependent

    @property
    def name(self) -> str:
        """``<dependent>:<dependency>``; a route dependent is ``route/<route>``."""
        prefix = "route/" if self.dependent.via_route else ""
        return f"{prefix}{self.dependent.name}:{self.dependency.service}"


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthDrill:
    """The profile's ``healthDrill``: whether the deployment is disposable, bounds, and the dependencies."""

    disposable: bool
    restore_s: int  # seconds within which every health answer must be green again after a restore
    interval_ms: int  # how often a health answer is asked while the drill waits
    timeout_s: int  # bound on each take-away or put-back command
    dependencies: tuple[Dependency, ...]

    def pairs(self) -> list[Pair]:
        """Every (dependent, dependency) pair, in declaration order."""
        return [Pair(dependency=d, dependent=p) for d in self.dependencies for p in d.dependents]


def parse(
    r: _Resolver, raw: Mapping[str, Any] | None, services: Sequence[Service], routes: Routes | None
) -> HealthDrill | None:
    """The ``healthDrill`` section, resolved and cross-checked against the declared services and routes."""
    if raw is None:
        return None
    p: PathKey = ("healthDrill",)
    by_name = {s.name: s for s in services}
    route_names = {rt.name for rt in routes.hosts} if routes is not None else set()
    disposable = r.text(raw.get("disposable", "false"), (*p, "disposable")).strip().lower()
    if disposable not in TRUE | FALSE:
        raise r.fail((*p, "disposable"), f"disposable must be true or false, got {disposable!r}")
    default_bound = r.integer(raw.get("boundSeconds", 10), (*p, "boundSeconds"), low=1, high=3600)
    deps: list[Dependency] = []
    for i, d in enumerate(raw.get("dependencies") or []):
        dp: PathKey = (*p, "dependencies", i)
        svc = by_name.get(str(d["service"]))
        if svc is None:
            raise r.fail((*dp, "service"), f"{d['service']!r} is not a declared service")
        method = r.text(d["method"], (*dp, "method"))
        if method not in METHODS:
            raise r.fail((*dp, "method"), f"method must be one of {', '.join(METHODS)}, got {method!r}")
        fields = {k: r.text(d.get(k, ""), (*dp, k)).strip() for k in ("unit", "stop", "start")}
        need = {"unit": ("unit",), "command": ("stop", "start"), "freeze": ()}[method]
        for key in need:
            if not fields[key]:
                raise r.fail((*dp, key), f"method {method} needs {key}")
        if method == "freeze" and not svc.listens:
            raise r.fail((*dp, "method"), f"freeze needs the port {svc.name!r} listens on; it declares none")
        dependents = []
        for j, e in enumerate(d.get("dependents") or []):
            ep: PathKey = (*dp, "dependents", j)
            if ("service" in e) == ("route" in e):
                raise r.fail(ep, "a dependent names exactly one of service or route")
            bound = r.integer(e.get("boundSeconds", default_bound), (*ep, "boundSeconds"), low=1, high=3600)
            if "route" in e:
                name = str(e["route"])
                if name not in route_names:
                    raise r.fail((*ep, "route"), f"{name!r} is not a declared route")
                dependents.append(Dependent(name=name, via_route=True, bound_s=bound))
                continue
            name = str(e["service"])
            target = by_name.get(name)
            if target is None or target.health is None or target.kind != "http":
                raise r.fail(
                    (*ep, "service"), f"{name!r} is not a declared http service with a health answer"
                )
            if name == svc.name:
                raise r.fail((*ep, "service"), f"{name!r} cannot depend on itself")
            dependents.append(Dependent(name=name, via_route=False, bound_s=bound))
        if not dependents:
            raise r.fail((*dp, "dependents"), "a dependency needs at least one dependent")
        if any(x.service == svc.name for x in deps):
            raise r.fail((*dp, "service"), f"{svc.name!r} is declared twice")
        deps.append(Dependency(service=svc.name, method=method, dependents=tuple(dependents), **fields))
    return HealthDrill(
        disposable=disposable in TRUE,
        restore_s=r.integer(raw.get("restoreSeconds", 60), (*p, "restoreSeconds"), low=1, high=3600),
        interval_ms=r.integer(
            raw.get("intervalMilliseconds", 250), (*p, "intervalMilliseconds"), low=50, high=10000
        ),
        timeout_s=r.integer(raw.get("timeoutSeconds", 120), (*p, "timeoutSeconds"), low=5, high=3600),
        dependencies=tuple(deps),
    )
