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
    format: str = "gates"  # the report shape (see gates.formats)

    @property
    def rollup(self) -> bool:
        """Whether this gate decides over other gates rather than over checks."""
        return bool(self.components)


def builtin_gates() -> list[str]:
    """Names of the gates shipped with the suite."""
    return sorted(p.stem for p in DEFINITIONS.glob("*.yaml"))


def parse_gate(name_or_path: str) -> YamlDocument:
    """Read and schema-validate a gate file (built-in name or path) without resolving its check ids."""
    builtin = DEFINITIONS / f"{name_or_path}.yaml"
    if "/" not in name_or_path and builtin.is_file():
        path, display = builtin, f"builtin:{name_or_path}"
    elif Path(name_or_path).is_file():
        path, display = Path(name_or_path), name_or_path
    else:
        raise ConfigError(
            f"unknown gate {name_or_path!r}: not a built-in ({', '.join(builtin_gates())}) and no such file",
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
    return [str(name) for name in doc.data.get("gates", [])]


def build_gate(doc: YamlDocument) -> Gate:
    """Turn a parsed gate file into a `Gate`; an unknown check id is a `ConfigError` naming the line."""
    from conformance.checks import known_check

    requires = []
    for i, name in enumerate(components(doc)):
        if not (DEFINITIONS / f"{name}.yaml").is_file() or name == doc.data["name"]:
            raise ConfigError(
                f"unknown component gate {name!r} (built-in gates: {', '.join(builtin_gates())})",
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
    )
    if report_format != "gates":
        from gates import formats

        where = doc.locate(("format",)) or "format"
        formats.get(report_format, source=doc.source, location=where).check(gate)
    return gate


def load_gate(name_or_path: str) -> Gate:
    """Load a built-in gate by name or a gate file by path; unknown check ids are a `ConfigError`."""
    return build_gate(parse_gate(name_or_path))


@dataclass(frozen=True, slots=True, kw_only=True)
class Expansion:
    """What a gate requires of one profile."""

    instances: tuple[CheckInstance, ...]
    unmatched: tuple[str, ...]  # requirements the profile gives no target for


def expand(gate: Gate, profile: Profile) -> Expansion:
    """The check instances ``gate`` requires of ``profile``; listed targets must exist."""
    from conformance.checks import catalog, instance_id

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
    return Expansion(instances=tuple(sorted(chosen.values(), key=lambda i: i.id)), unmatched=tuple(unmatched))
