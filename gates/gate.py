"""Gate definitions: policy as data, validated once, then frozen."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from conformance import _schemas
from conformance.errors import ConfigError
from conformance.profile import Profile
from conformance.yamlsource import YamlDocument, load_yaml

if TYPE_CHECKING:
    from conformance.checks import CheckInstance

# conformance.checks imports pytest and every probe library; it is imported only where needed,
# so that `gates run` can start the check run before paying for those imports itself.

DEFINITIONS = Path(__file__).resolve().parent / "definitions"


@dataclass(frozen=True, slots=True, kw_only=True)
class Requirement:
    """One required check, for every target or for the listed ones."""

    check: str
    targets: tuple[str, ...] | None
    optional: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Gate:
    """A named set of required check instances and the report it writes."""

    name: str
    title: str
    description: str
    report: str
    source: str
    sha256: str
    requires: tuple[Requirement, ...]
    components: tuple[str, ...] = ()  # a roll-up gate: the gates it decides over
    # component -> the serving modes it is required in (absent: every mode)
    component_modes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    format: str = "gates"  # the report shape (see gates.formats)

    def applicable(self, serving_mode: str | None) -> tuple[str, ...]:
        """The components required of a deployment that declares ``serving_mode``."""
        modes = dict(self.component_modes)
        return tuple(c for c in self.components if c not in modes or serving_mode in modes[c])

    @property
    def rollup(self) -> bool:
        """Whether this gate decides over other gates rather than over checks."""
        return bool(self.components)


def builtin_gates(profile: str | None = None) -> list[str]:
    """Names of the gates shipped with the suite (with ``profile``: including that profile's own)."""
    names = {p.stem for p in DEFINITIONS.glob("*.yaml")}
    if profile is not None:
        names |= {p.stem for p in (DEFINITIONS / profile).glob("*.yaml")}
    return sorted(names)


def builtin_path(name: str, profile: str | None = None) -> Path | None:
    """The built-in definition of ``name``: the profile's own (``definitions/<profile>/``) first."""
    if profile is not None and (DEFINITIONS / profile / f"{name}.yaml").is_file():
        return DEFINITIONS / profile / f"{name}.yaml"
    path = DEFINITIONS / f"{name}.yaml"
    return path if path.is_file() else None


def parse_gate(name_or_path: str, *, profile: str | None = None) -> YamlDocument:
    """Read and schema-validate a gate file (built-in name or path) without resolving its check ids.

    A built-in name resolves to the profile's own definition when ``profile`` ships one
    (``gates/definitions/<profile>/<name>.yaml``), else to the shared one.
    """
    builtin = builtin_path(name_or_path, profile) if "/" not in name_or_path else None
    if builtin is not None:
        own = builtin.parent != DEFINITIONS
        path, display = builtin, f"builtin:{profile}/{name_or_path}" if own else f"builtin:{name_or_path}"
    elif Path(name_or_path).is_file():
        path, display = Path(name_or_path), name_or_path
    else:
        raise ConfigError(
            f"unknown gate {name_or_path!r}: not a built-in ({', '.join(builtin_gates(profile))}) and no such file",
            source="<argument --gate>",
        )
    doc = load_yaml(path, source=display)
    _schemas.validate(doc.data, "gate-definition", source=display, locate=doc.locate)
    return doc


def required_checks(doc: YamlDocument) -> list[str]:
    """The check ids a parsed gate file names (none for a roll-up)."""
    return [str(raw["check"]) for raw in doc.data.get("requires", [])]


def components(doc: YamlDocument) -> list[str]:
    """The component gates a parsed roll-up gate names (none for a check gate)."""
    return [str(c if isinstance(c, str) else c["gate"]) for c in doc.data.get("gates", [])]


def _component_modes(doc: YamlDocument) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(
        (str(c["gate"]), tuple(str(m) for m in c["servingModes"]))
        for c in doc.data.get("gates", [])
        if isinstance(c, dict)
    )


def build_gate(doc: YamlDocument, *, profile: str | None = None) -> Gate:
    """Turn a parsed gate file into a `Gate`; an unknown check id is a `ConfigError` naming the line."""
    from conformance.checks import known_check

    requires = []
    for i, name in enumerate(components(doc)):
        if builtin_path(name, profile) is None or name == doc.data["name"]:
            raise ConfigError(
                f"unknown component gate {name!r} (built-in gates: {', '.join(builtin_gates(profile))})",
                source=doc.source,
                location=doc.locate(("gates", i)) or f"gates[{i}]",
            )
    for i, raw in enumerate(doc.data.get("requires", [])):
        where = doc.locate(("requires", i, "check")) or f"requires[{i}].check"
        known_check(raw["check"], source=doc.source, location=where)
        targets = tuple(raw["targets"]) if "targets" in raw else None
        requires.append(Requirement(check=raw["check"], targets=targets, optional=bool(raw.get("optional"))))
    report_format = str(doc.data.get("format", "gates"))
    gate = Gate(
        format=report_format,
        name=doc.data["name"],
        title=doc.data.get("title", doc.data["name"]),
        description=doc.data.get("description", ""),
        report=doc.data["report"],
        source=doc.source,
        sha256=doc.sha256,
        requires=tuple(requires),
        components=tuple(components(doc)),
        component_modes=_component_modes(doc),
    )
    if report_format != "gates":
        from gates import formats

        where = doc.locate(("format",)) or "format"
        formats.get(report_format, source=doc.source, location=where).check(gate)
    return gate


def load_gate(name_or_path: str, *, profile: str | None = None) -> Gate:
    """Load a built-in gate by name (the profile's own first) or a gate file by path."""
    return build_gate(parse_gate(name_or_path, profile=profile), profile=profile)


@dataclass(frozen=True, slots=True, kw_only=True)
class Expansion:
    """What a gate requires of one profile."""

    instances: tuple[CheckInstance, ...]
    unmatched: tuple[str, ...]  # requirements the profile gives no target for
    # check id -> the setting that gives it a target (the check's `applies_when`), for unmatched ones
    needs: tuple[tuple[str, str], ...] = ()
    # why, per unmatched requirement that has a reason other than "no target": (check id, reason code)
    reasons: tuple[tuple[str, str], ...] = ()

    def reason(self, check_id: str) -> str:
        """``requires_systemd`` (the check reads systemd, which the profile says does not run it) or ``no_target``."""
        return dict(self.reasons).get(check_id, "no_target")


def expand(gate: Gate, profile: Profile) -> Expansion:
    """The check instances ``gate`` requires of ``profile``; listed targets must exist."""
    from conformance.checks import REGISTRY, catalog, instance_id

    available = catalog(profile)
    by_check: dict[str, list[CheckInstance]] = {}
    for inst in available:
        by_check.setdefault(inst.check, []).append(inst)
    chosen: dict[str, CheckInstance] = {}
    unmatched: list[str] = []
    for req in gate.requires:
        instances = by_check.get(req.check, [])
        if req.targets is not None:
            names = {i.target for i in instances}
            missing = [t for t in req.targets if t not in names]
            if missing:
                raise ConfigError(
                    f"requires {', '.join(instance_id(req.check, t) for t in missing)}, but profile "
                    f"{profile.name!r} has no such target (it has: {', '.join(sorted(names)) or 'none'})",
                    source=gate.source,
                )
            instances = [i for i in instances if i.target in req.targets]
        if not instances and not req.optional:
            unmatched.append(req.check)
        for inst in instances:
            chosen[inst.id] = inst
    needs = tuple(
        (c, REGISTRY[c].applies_when) for c in unmatched if c in REGISTRY and REGISTRY[c].applies_when
    )
    reasons = tuple(
        (c, "requires_systemd")
        for c in unmatched
        if c in REGISTRY and REGISTRY[c].needs_systemd and profile.process_manager != "systemd"
    )
    return Expansion(
        instances=tuple(sorted(chosen.values(), key=lambda i: i.id)),
        unmatched=tuple(unmatched),
        reasons=reasons,
        needs=needs,
    )
