"""Pure rules behind the Nooterra live checks: parsing what the API, its env file and its alert
rules say (digest §5 and §6.2). No I/O here; the suite feeds these the probes' observations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

# Valid ops scopes (an unknown one makes the API refuse to start); a *_write implies its *_read.
OPS_SCOPES = (
    "ops_read",
    "ops_write",
    "finance_read",
    "finance_write",
    "audit_read",
    "governance_tenant_read",
    "governance_tenant_write",
    "governance_global_read",
    "governance_global_write",
)
# A token holding every write scope can do anything the API offers: one such shared token is what
# scoped ops tokens exist to avoid.
WRITE_SCOPES = tuple(s for s in OPS_SCOPES if s.endswith("_write"))
AMOUNT_KEYS = ("amountCents", "amount_cents", "priceCents", "price_cents", "price", "amount")
MAX_SAFE_INTEGER = 2**53 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class OpsToken:
    """One entry of ``PROXY_OPS_TOKENS`` (the token itself is never kept)."""

    index: int
    scopes: tuple[str, ...]
    malformed: str | None


def ops_tokens(value: str) -> list[OpsToken]:
    """Parse ``token:scope1,scope2;token2:scopeA`` the way the API does (only the first two parts count)."""
    out: list[OpsToken] = []
    for index, raw in enumerate(e for e in value.split(";") if e.strip()):
        parts = raw.split(":")
        token = parts[0].strip()
        scopes = tuple(s.strip() for s in (parts[1] if len(parts) > 1 else "").split(",") if s.strip())
        malformed = None
        if not token:
            malformed = "empty token"
        elif "." in token:
            malformed = "the token contains '.', so the API parses it as an API key and never as an ops token"
        elif len(parts) > 2:
            malformed = "the entry has more than one ':' (everything after the second part is ignored)"
        out.append(OpsToken(index=index, scopes=scopes, malformed=malformed))
    return out


def ops_token_problems(value: str | None) -> list[str]:
    """What is wrong with the scoped ops tokens of an env file; empty when every token is scoped."""
    if value is None or not value.strip():
        return ["PROXY_OPS_TOKENS is not set: the API falls back to the legacy all-scopes PROXY_OPS_TOKEN"]
    problems: list[str] = []
    for tok in ops_tokens(value):
        label = f"token #{tok.index + 1}"
        if tok.malformed:
            problems.append(f"{label}: {tok.malformed}")
        if not tok.scopes:
            problems.append(f"{label} has no scopes")
        unknown = sorted(set(tok.scopes) - set(OPS_SCOPES))
        if unknown:
            problems.append(f"{label} has unknown scopes {', '.join(unknown)} (the API refuses to start)")
        if set(WRITE_SCOPES) <= set(tok.scopes):
            problems.append(f"{label} holds every write scope: a broad shared token, not a scoped one")
    return problems


_SAMPLE = re.compile(
    r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+"
    r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?Inf|NaN)(?:\s+-?\d+)?$"
)


def metric_samples(text: str) -> dict[str, list[tuple[dict[str, str], str]]]:
    """Prometheus text format: series name → [(labels, value)] for every non-comment line."""
    out: dict[str, list[tuple[dict[str, str], str]]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        out.setdefault(match.group(1), []).append((labels, match.group(4)))
    return out


def metric_names(text: str) -> set[str]:
    """The series names a scrape exports (the first token of every non-comment line)."""
    return set(metric_samples(text))


_PROMQL_WORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "inf",
        "nan",
        "atan2",
    }
)


def promql_series(expr: str) -> set[str]:
    """Series names a PromQL expression reads: identifiers that are neither functions, aggregations,
    keywords, label names nor inside strings, label matchers, ranges or grouping clauses."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names: set[str] = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = match.group(0)
        start, end = match.span()
        if start > 0 and (text[start - 1].isdigit() or text[start - 1] == "."):
            continue  # a duration or number suffix such as 5m or 1e3
        if text[end:].lstrip().startswith("("):
            continue  # a function or aggregation
        if word.lower() in _PROMQL_WORDS:
            continue
        names.add(word)
    return names


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRule:
    """One alerting rule of a Prometheus rules file."""

    group: str
    alert: str
    expr: str


def alert_rules(text: str) -> tuple[list[AlertRule], list[str]]:
    """The alerting rules of a Prometheus rules file and what makes the file invalid."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [], [f"not valid YAML: {str(exc).splitlines()[0]}"]
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list) or not doc["groups"]:
        return [], ["the file has no non-empty top-level 'groups' list"]
    rules: list[AlertRule] = []
    problems: list[str] = []
    seen_groups: set[str] = set()
    for gi, group in enumerate(doc["groups"]):
        if not isinstance(group, dict) or not isinstance(group.get("name"), str) or not group["name"]:
            problems.append(f"groups[{gi}] has no name")
            continue
        name = group["name"]
        if name in seen_groups:
            problems.append(f"group {name!r} is declared twice")
        seen_groups.add(name)
        if not isinstance(group.get("rules"), list) or not group["rules"]:
            problems.append(f"group {name!r} has no rules")
            continue
        for ri, rule in enumerate(group["rules"]):
            where = f"group {name!r} rules[{ri}]"
            if not isinstance(rule, dict):
                problems.append(f"{where} is not a mapping")
                continue
            if "record" in rule:
                continue
            alert, expr = rule.get("alert"), rule.get("expr")
            if not isinstance(alert, str) or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", alert):
                problems.append(f"{where} has no valid alert name")
                continue
            if not isinstance(expr, str | int | float) or not str(expr).strip():
                problems.append(f"alert {alert!r} has no expr")
                continue
            if str(expr).count("(") != str(expr).count(")"):
                problems.append(f"alert {alert!r}: unbalanced parentheses in expr")
            duration = rule.get("for")
            if duration is not None and not re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", str(duration)):
                problems.append(f"alert {alert!r}: 'for' is not a duration: {duration!r}")
            rules.append(AlertRule(group=name, alert=alert, expr=str(expr)))
    if not rules and not problems:
        problems.append("the file declares no alerting rules")
    return rules, problems


def unknown_series(
    rules: Iterable[AlertRule], exported: set[str], on_demand: Iterable[str] = ()
) -> dict[str, list[str]]:
    """alert → series its expression reads that the API neither exports now nor emits on demand.

    A series the API sets only once there is something to count (``on_demand``) is absent from a
    scrape of an idle deployment; an alert on it evaluates to no alert, which is right.
    """
    known = exported | set(on_demand)
    out: dict[str, list[str]] = {}
    for rule in rules:
        missing = sorted(promql_series(rule.expr) - known)
        if missing:
            out[rule.alert] = missing
    return out


def payment_offer(header: str) -> tuple[dict[str, Any] | None, str | None]:
    """Parse an ``x-payment-required`` value: a JSON object or ``k=v; k=v`` pairs (digest §6.2)."""
    text = header.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as exc:
            return None, f"not valid JSON: {exc}"
        if not isinstance(value, dict):
            return None, "the JSON form is not an object"
        return value, None
    fields: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            return None, f"{part!r} is not key=value"
        if key.strip() in fields:
            return None, f"{key.strip()!r} appears twice (X402_PAYMENT_REQUIRED_AMBIGUOUS_FIELDS)"
        fields[key.strip()] = value.strip()
    return (fields, None) if fields else (None, "empty")


def offer_amount(offer: Mapping[str, Any]) -> int | None:
    """The first positive safe integer among the amount fields, as the gateway reads it."""
    for key in AMOUNT_KEYS:
        value = offer.get(key)
        try:
            number = int(str(value).strip())
        except ValueError:
            continue
        if 0 < number <= MAX_SAFE_INTEGER:
            return number
    return None


def positive_int(value: str | None) -> int | None:
    """A positive decimal integer setting, else None."""
    if value is None or not re.fullmatch(r"\s*\d+\s*", value):
        return None
    number = int(value)
    return number if number > 0 else None
