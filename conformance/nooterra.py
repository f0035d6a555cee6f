"""The Nooterra self-host and serving-mode contracts as pure rules over observed files.

Each rule takes what a probe read (a `FileRead`) and returns an `Outcome`: whether the
contract holds, the upstream failure code, and the upstream ``detail`` object, exactly as the
upstream gate scripts (``run-self-host-topology-bundle-gate.mjs``,
``run-self-host-upgrade-migration-gate.mjs``, ``run-serving-mode-boundary-gate.mjs``) compute
them, so that a report built from these outcomes hashes to the same ``artifactHash``.

Those scripts run in JavaScript, so the rules keep JavaScript's semantics where they show in
the output: regular expressions (``\\s``, ``^``/``$`` with and without the ``m`` flag), ``trim``,
``String(x)``, strict ``=== true`` tests, and ``localeCompare`` ordering (`collation_key`).
The rules upstream does not have (the topology report's hash, sources and age; the declared
serving mode against the policy) are marked as extensions.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conformance.canonical import CanonicalJsonError, canonical_hash, canonical_json
from conformance.clock import iso_millis, parse_instant

# --- JavaScript compatibility -----------------------------------------------------------------

_JS_SPACE_CHARS = "\t\n\x0b\x0c\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_JS_SPACE = r"[\t\n\x0b\x0c\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
_JS_LINE_START = r"(?:(?<=[\n\r\u2028\u2029])|\A)"
_JS_LINE_END = r"(?=[\n\r\u2028\u2029]|\Z)"

# ICU root collation (what V8's localeCompare uses) for ASCII: controls are ignorable, then
# whitespace, punctuation, symbols, digits, letters; a letter's case decides only on a tie.
_ASCII_ORDER = "\t\n\x0b\x0c\r _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$0123456789abcdefghijklmnopqrstuvwxyz"
_PRIMARY = {ch: i + 1 for i, ch in enumerate(_ASCII_ORDER)}


def collation_key(text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Sort key that orders ASCII strings as JavaScript's ``a.localeCompare(b)`` does.

    Primary weights first (case-blind, punctuation before digits before letters), then case
    (lower before upper). Non-ASCII characters sort after every ASCII letter, by code point:
    an approximation of ICU, which the upstream contracts' identifiers never need.
    """
    primary: list[int] = []
    tertiary: list[int] = []
    for ch in text:
        code = ord(ch)
        if code < 0x80:
            weight = _PRIMARY.get(ch.lower())
            if weight is None:  # C0 controls and DEL are ignorable
                continue
            primary.append(weight)
            tertiary.append(1 if ch.isupper() else 0)
        else:
            primary.append(0x1000 + code)
            tertiary.append(0)
    return tuple(primary), tuple(tertiary)


def locale_sorted(values: Iterable[str]) -> list[str]:
    """``values`` sorted as ``Array.prototype.sort`` with ``localeCompare`` (stable)."""
    return sorted(values, key=collation_key)


def js_trim(text: str) -> str:
    """``String.prototype.trim``."""
    return text.strip(_JS_SPACE_CHARS)


def js_string(value: Any) -> str:
    """``String(value)`` for a JSON value (``null`` reads as the empty string, as with ``?? ""``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return canonical_json(value)
    if isinstance(value, list):
        return ",".join(js_string(v) for v in value)
    return "[object Object]"


def optional_string(value: Any) -> str | None:
    """Upstream's ``normalizeOptionalString``: a trimmed non-empty string, else None."""
    if not isinstance(value, str):
        return None
    trimmed = js_trim(value)
    return trimmed or None


def member(value: Any, key: str) -> Any:
    """``value?.[key]`` on decoded JSON: None unless ``value`` is an object holding ``key``."""
    return value.get(key) if isinstance(value, dict) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _non_empty_array(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 0


@dataclass(frozen=True, slots=True)
class JsPattern:
    """A JavaScript regular expression: its source as ``String(regex)`` prints it, and its Python twin."""

    source: str
    regex: re.Pattern[str]

    def test(self, text: str) -> bool:
        """``regex.test(text)``."""
        return self.regex.search(text) is not None


def js_regex(source: str) -> JsPattern:
    """Translate a JavaScript regex literal (``/body/flags``) whose body uses only plain syntax."""
    body, _, flags = source[1:].rpartition("/")
    multiline = "m" in flags
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            out.append(_JS_SPACE if nxt == "s" else ch + nxt)
            i += 2
            continue
        if ch == "^":
            out.append(_JS_LINE_START if multiline else r"\A")
        elif ch == "$":
            out.append(_JS_LINE_END if multiline else r"\Z")
        else:
            out.append(ch)
        i += 1
    return JsPattern(source=source, regex=re.compile("".join(out), re.IGNORECASE if "i" in flags else 0))


# --- observations and outcomes ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FileRead:
    """A file as a Node.js ``fs.readFile(path, "utf8")`` sees it.

    ``path`` is absolute and normalized (``path.resolve``); ``sha256`` is of the UTF-8 text;
    ``error`` is the Node.js error message when the file could not be read.
    """

    path: str
    text: str | None
    sha256: str | None
    error: str | None

    @property
    def readable(self) -> bool:
        """Whether the content was read."""
        return self.text is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """One upstream check result: ok, failure code and detail (whose ``message`` says why)."""

    ok: bool
    failure_code: str | None
    detail: dict[str, Any]

    @property
    def message(self) -> str:
        """The detail's message."""
        return str(self.detail.get("message", ""))


def _outcome(ok: bool, code: str | None, detail: dict[str, Any]) -> Outcome:
    return Outcome(ok=ok, failure_code=None if ok else code, detail=detail)


def _missing(patterns: Sequence[JsPattern], text: str) -> list[str]:
    return [p.source for p in patterns if not p.test(text)]


def parse_json(read: FileRead) -> tuple[Any, str | None]:
    """``JSON.parse`` of a read file: (value, None), or (None, why it is not JSON)."""
    if read.text is None:
        return None, read.error or "unreadable"

    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not valid JSON")

    try:
        return json.loads(read.text, parse_constant=refuse), None
    except json.JSONDecodeError as exc:
        return None, f"{exc.msg} in JSON at position {exc.pos} (line {exc.lineno} column {exc.colno})"
    except (ValueError, RecursionError) as exc:
        return None, str(exc)


# --- self-host topology bundle gate -----------------------------------------------------------

TOPOLOGY_SCHEMA_VERSION = "SelfHostTopologyBundleGateReport.v1"
TOPOLOGY_HASH_SCOPE = "SelfHostTopologyBundleGateDeterministicCore.v1"
REQUIRED_SERVICES = (
    "postgres",
    "minio",
    "minio-init",
    "api",
    "maintenance",
    "magic-link",
    "x402-upstream-mock",
    "x402-gateway",
)
REQUIRED_ENV_EXAMPLE_KEYS = (
    "NOOTERRA_OPS_TOKEN",
    "NOOTERRA_GATEWAY_API_KEY",
    "MAGIC_LINK_API_KEY",
    "MAGIC_LINK_SETTINGS_KEY_HEX",
    "NOOTERRA_EVIDENCE_S3_ACCESS_KEY_ID",
    "NOOTERRA_EVIDENCE_S3_SECRET_ACCESS_KEY",
    "NOOTERRA_EVIDENCE_S3_BUCKET",
)
_EVIDENCE_STORE = tuple(
    js_regex(s)
    for s in (
        '/PROXY_EVIDENCE_STORE:\\s*"s3"/u',
        "/PROXY_EVIDENCE_S3_ENDPOINT:/u",
        "/PROXY_EVIDENCE_S3_BUCKET:/u",
        "/PROXY_EVIDENCE_S3_ACCESS_KEY_ID:/u",
        "/PROXY_EVIDENCE_S3_SECRET_ACCESS_KEY:/u",
    )
)
_GATEWAY_KEY = js_regex('/NOOTERRA_API_KEY:\\s*"\\$\\{NOOTERRA_GATEWAY_API_KEY:\\?/u')
_MAGIC_LINK_BASE = js_regex("/MAGIC_LINK_NOOTERRA_API_BASE_URL:/u")
_MAGIC_LINK_TOKEN = js_regex('/MAGIC_LINK_NOOTERRA_OPS_TOKEN:\\s*"\\$\\{NOOTERRA_OPS_TOKEN:\\?/u')
_SERVICES_KEY = js_regex("/^services:\\s*$/u")
_TOP_LEVEL = js_regex("/^[A-Za-z0-9_-]/u")
_SERVICE_NAME = re.compile(r"\A  ([A-Za-z0-9][A-Za-z0-9._-]*):" + _JS_SPACE + r"*\Z")
_ENV_KEY = re.compile(r"\A([A-Za-z_][A-Za-z0-9_]*)=")


def compose_service_names(text: str) -> list[str]:
    """Service names under the top-level ``services:`` key, found line by line as upstream does."""
    names: list[str] = []
    inside = False
    for line in re.split(r"\r?\n", text):
        if not inside:
            inside = _SERVICES_KEY.test(line)
            continue
        if _TOP_LEVEL.test(line):
            break
        match = _SERVICE_NAME.match(line)
        if match and match.group(1) not in names:
            names.append(match.group(1))
    return locale_sorted(names)


def env_example_keys(text: str) -> list[str]:
    """Keys assigned (``KEY=``) on non-comment lines."""
    keys: list[str] = []
    for line in re.split(r"\r?\n", text):
        trimmed = js_trim(line)
        if not trimmed or trimmed.startswith("#"):
            continue
        match = _ENV_KEY.match(trimmed)
        if match and match.group(1) not in keys:
            keys.append(match.group(1))
    return locale_sorted(keys)


def compose_topology_present(compose: FileRead) -> Outcome:
    """``compose_topology_present``: the compose topology can be read."""
    if compose.text is None:
        return _outcome(
            False,
            "compose_topology_missing_or_unreadable",
            {"path": compose.path, "message": f"Unable to read compose topology file: {compose.error}"},
        )
    return _outcome(
        True,
        None,
        {"path": compose.path, "sha256": compose.sha256, "message": "Self-host compose topology is present."},
    )


def required_services_declared(compose_text: str) -> Outcome:
    """``required_services_declared``: every service of the self-host topology is declared."""
    declared = compose_service_names(compose_text)
    missing = [s for s in REQUIRED_SERVICES if s not in declared]
    return _outcome(
        not missing,
        "required_services_missing",
        {
            "requiredServices": list(REQUIRED_SERVICES),
            "declaredServices": declared,
            "missingServices": missing,
            "message": "Compose topology is missing one or more required services."
            if missing
            else "Compose topology declares all required services.",
        },
    )


def api_evidence_store_wiring_present(compose_text: str) -> Outcome:
    """``api_evidence_store_wiring_present``: the API stores evidence in S3 with full wiring."""
    missing = _missing(_EVIDENCE_STORE, compose_text)
    return _outcome(
        not missing,
        "api_evidence_store_wiring_missing",
        {
            "missingPatterns": missing,
            "message": "Compose topology is missing one or more API evidence store env mappings."
            if missing
            else "API evidence store wiring is present in compose topology.",
        },
    )


def x402_gateway_api_key_fail_closed(compose_text: str) -> Outcome:
    """``x402_gateway_api_key_fail_closed``: the gateway's API key uses ``${VAR:?}`` substitution."""
    ok = _GATEWAY_KEY.test(compose_text)
    return _outcome(
        ok,
        "x402_gateway_api_key_not_fail_closed",
        {
            "message": "x402 gateway API key is required via fail-closed env substitution."
            if ok
            else "x402 gateway API key must be required with fail-closed env substitution "
            "(${NOOTERRA_GATEWAY_API_KEY:?...)."
        },
    )


def magic_link_nooterra_binding_present(compose_text: str) -> Outcome:
    """``magic_link_nooterra_binding_present``: Magic Link is bound to the API with a fail-closed ops token."""
    ok = _MAGIC_LINK_BASE.test(compose_text) and _MAGIC_LINK_TOKEN.test(compose_text)
    return _outcome(
        ok,
        "magic_link_nooterra_binding_missing",
        {
            "message": "Magic Link includes required API+ops-token binding."
            if ok
            else "Magic Link must set MAGIC_LINK_NOOTERRA_API_BASE_URL and fail-closed "
            "MAGIC_LINK_NOOTERRA_OPS_TOKEN."
        },
    )


def env_example_required_keys_present(env: FileRead) -> Outcome:
    """``env_example_required_keys_present``: the env example declares every required key."""
    if env.text is None:
        return _outcome(
            False,
            "env_example_missing_or_unreadable",
            {"path": env.path, "message": f"Unable to read env example file: {env.error}"},
        )
    keys = env_example_keys(env.text)
    missing = [k for k in REQUIRED_ENV_EXAMPLE_KEYS if k not in keys]
    return _outcome(
        not missing,
        "env_example_required_keys_missing",
        {
            "path": env.path,
            "sha256": env.sha256,
            "requiredKeys": list(REQUIRED_ENV_EXAMPLE_KEYS),
            "declaredKeys": keys,
            "missingKeys": missing,
            "message": "Env example is missing one or more required self-host topology keys."
            if missing
            else "Env example includes required self-host topology keys.",
        },
    )


# --- self-host upgrade and migration gate -----------------------------------------------------

_PLAYBOOK_SECTIONS = tuple(
    js_regex(s)
    for s in (
        "/^#\\s+Self-Host Upgrade and Migration Playbook$/m",
        "/^##\\s+Preconditions$/m",
        "/^##\\s+Step 1:\\s+Capture backup and evidence snapshot$/m",
        "/^##\\s+Step 2:\\s+Apply upgrade$/m",
        "/^##\\s+Step 3:\\s+Run migration validation gate$/m",
        "/^##\\s+Step 4:\\s+Post-upgrade smoke and readiness$/m",
        "/^##\\s+Rollback$/m",
    )
)
_COMPOSE_MIGRATE = js_regex('/PROXY_MIGRATE_ON_STARTUP:\\s*"1"/u')
_HELM_MIGRATE = js_regex("/^\\s*migrateOnStartup:\\s*true\\s*$/m")
_TEMPLATE_MIGRATE = js_regex("/name:\\s*PROXY_MIGRATE_ON_STARTUP/u")


def _read_or_fail(read: FileRead, code: str, what: str) -> Outcome | None:
    if read.text is not None:
        return None
    return _outcome(False, code, {"path": read.path, "message": f"{what}: {read.error}"})


def upgrade_playbook_present_and_complete(playbook: FileRead) -> Outcome:
    """``upgrade_playbook_present_and_complete``: the playbook has every required section."""
    failed = _read_or_fail(
        playbook, "upgrade_playbook_missing_or_unreadable", "Unable to read upgrade/migration playbook"
    )
    if failed is not None or playbook.text is None:
        return failed or _never()
    missing = locale_sorted(_missing(_PLAYBOOK_SECTIONS, playbook.text))
    return _outcome(
        not missing,
        "upgrade_playbook_sections_missing",
        {
            "path": playbook.path,
            "sha256": playbook.sha256,
            "missingPatterns": missing,
            "message": "Upgrade/migration playbook is missing required sections."
            if missing
            else "Upgrade/migration playbook is present with required sections.",
        },
    )


def _never() -> Outcome:
    raise AssertionError("unreachable: a readable file has text")


def _file_matches(
    read: FileRead, pattern: JsPattern, *, unreadable: tuple[str, str], code: str, passed: str, failed: str
) -> Outcome:
    """The shape of most bundle rules: the file must be readable and ``pattern`` must match its text."""
    refused = _read_or_fail(read, *unreadable)
    if refused is not None or read.text is None:
        return refused or _never()
    ok = pattern.test(read.text)
    return _outcome(ok, code, {"path": read.path, "sha256": read.sha256, "message": passed if ok else failed})


def compose_migrate_on_startup_enabled(compose: FileRead) -> Outcome:
    """``compose_migrate_on_startup_enabled``: the API migrates its schema on startup."""
    return _file_matches(
        compose,
        _COMPOSE_MIGRATE,
        unreadable=("compose_missing_or_unreadable", "Unable to read self-host compose topology"),
        code="compose_migrate_on_startup_not_enabled",
        passed='Compose topology sets PROXY_MIGRATE_ON_STARTUP="1".',
        failed='Compose topology must set PROXY_MIGRATE_ON_STARTUP="1" for deterministic startup '
        "migration behavior.",
    )


def helm_values_migrate_on_startup_enabled(values: FileRead) -> Outcome:
    """``helm_values_migrate_on_startup_enabled``: the chart defaults to migrating on startup."""
    return _file_matches(
        values,
        _HELM_MIGRATE,
        unreadable=("helm_values_missing_or_unreadable", "Unable to read Helm values"),
        code="helm_values_migrate_on_startup_not_enabled",
        passed="Helm values default migrateOnStartup is enabled.",
        failed="Helm values must default store.migrateOnStartup=true for this self-host upgrade path.",
    )


def api_template_migrate_env_wired(template: FileRead) -> Outcome:
    """``api_template_migrate_env_wired``: the API deployment template passes the migrate switch."""
    return _file_matches(
        template,
        _TEMPLATE_MIGRATE,
        unreadable=("api_template_missing_or_unreadable", "Unable to read Helm API deployment template"),
        code="api_template_migrate_env_missing",
        passed="Helm API template wires PROXY_MIGRATE_ON_STARTUP.",
        failed="Helm API template must wire PROXY_MIGRATE_ON_STARTUP from values.",
    )


def self_host_topology_bundle_gate_green(report: FileRead) -> Outcome:
    """``self_host_topology_bundle_gate_green``: the topology report parses and its verdict is ok.

    Upstream records the failure code ``self_host_topology_bundle_not_green`` even on a pass;
    the report writer restores that quirk, the outcome here keeps pass and fail apart.
    """
    value, error = parse_json(report)
    if error is not None:
        return _outcome(
            False,
            "self_host_topology_bundle_report_missing_or_invalid",
            {
                "path": report.path,
                "message": "Self-host topology bundle gate report is required and must be valid JSON: "
                f"{error}",
            },
        )
    schema_ok = member(value, "schemaVersion") == TOPOLOGY_SCHEMA_VERSION
    verdict_ok = member(member(value, "verdict"), "ok") is True
    ok = schema_ok and verdict_ok
    return _outcome(
        ok,
        "self_host_topology_bundle_not_green" if schema_ok else "self_host_topology_bundle_schema_invalid",
        {
            "path": report.path,
            "sha256": report.sha256,
            "schemaVersion": optional_string(member(value, "schemaVersion")),
            "verdictOk": verdict_ok,
            "verdictStatus": optional_string(member(member(value, "verdict"), "status")),
            "artifactHash": optional_string(member(value, "artifactHash")),
            "message": "Self-host topology bundle gate is green."
            if ok
            else "Self-host topology bundle gate must be SelfHostTopologyBundleGateReport.v1 with verdict.ok=true.",
        },
    )


# Extensions: what the upstream upgrade gate does not check about the topology report.

REPORT_CORE_KEYS = (
    "schemaVersion",
    "artifactHashScope",
    "capturedAt",
    "inputs",
    "sources",
    "checks",
    "blockingIssues",
    "verdict",
)
FUTURE_SKEW_S = 300


def gate_report_hash(report: Mapping[str, Any]) -> str:
    """The artifactHash rule of the upstream gate reports: sha256 of the canonical deterministic core."""
    core = {k: report.get(k) for k in REPORT_CORE_KEYS}
    for key in ("checks", "blockingIssues"):
        if not isinstance(core[key], list):
            core[key] = []
    return canonical_hash(core)


def topology_report_hash_valid(report: FileRead, value: Any) -> Outcome:
    """Extension: the topology report's artifactHash recomputes from its own content."""
    recorded = optional_string(member(value, "artifactHash"))
    try:
        recomputed: str | None = gate_report_hash(value) if isinstance(value, dict) else None
    except CanonicalJsonError:
        recomputed = None
    ok = recorded is not None and recorded == recomputed
    return _outcome(
        ok,
        "self_host_topology_bundle_artifact_hash_mismatch",
        {
            "path": report.path,
            "sha256": report.sha256,
            "artifactHash": recorded,
            "recomputedArtifactHash": recomputed,
            "message": "Self-host topology bundle gate report artifactHash recomputes from its content."
            if ok
            else "Self-host topology bundle gate report artifactHash does not recompute from its content "
            "(the report was edited after it was written, or is not a gate report).",
        },
    )


def topology_report_sources_current(report: FileRead, value: Any, current: Mapping[str, FileRead]) -> Outcome:
    """Extension: the files the topology report certified are the bundle's current files (same sha256)."""
    sources = member(value, "sources")
    mismatches = []
    for key, read in current.items():
        recorded = member(sources, key)
        recorded_sha = member(recorded, "sha256")
        if recorded_sha != read.sha256:
            mismatches.append(
                {
                    "source": key,
                    "recordedPath": member(recorded, "path"),
                    "recordedSha256": recorded_sha,
                    "currentPath": read.path,
                    "currentSha256": read.sha256,
                }
            )
    ok = not mismatches
    return _outcome(
        ok,
        "self_host_topology_bundle_sources_stale",
        {
            "path": report.path,
            "sha256": report.sha256,
            "mismatches": mismatches,
            "message": "Self-host topology bundle gate report certifies the current bundle files."
            if ok
            else "Self-host topology bundle gate report certifies other bundle files than the current ones "
            f"({', '.join(m['source'] for m in mismatches)} changed since); re-run the topology gate.",
        },
    )


def topology_report_fresh(report: FileRead, value: Any, *, now: dt.datetime, max_age_s: int) -> Outcome:
    """Extension: the topology report was generated at most ``max_age_s`` seconds ago (and not later than now)."""
    generated_text = member(value, "generatedAt")
    generated = parse_instant(generated_text) if isinstance(generated_text, str) else None
    detail: dict[str, Any] = {
        "path": report.path,
        "sha256": report.sha256,
        "generatedAt": generated_text if isinstance(generated_text, str) else None,
        "maxAgeSeconds": max_age_s,
    }
    if generated is None:
        detail["message"] = "Self-host topology bundle gate report has no valid generatedAt timestamp."
        return _outcome(False, "self_host_topology_bundle_report_undated", detail)
    not_after = generated + dt.timedelta(seconds=max_age_s)
    detail["notAfter"] = iso_millis(not_after)
    if generated > now + dt.timedelta(seconds=FUTURE_SKEW_S):
        detail["message"] = "Self-host topology bundle gate report is dated in the future."
        return _outcome(False, "self_host_topology_bundle_report_from_future", detail)
    if now > not_after:
        detail["message"] = (
            f"Self-host topology bundle gate report is older than {max_age_s} s; re-run the topology gate."
        )
        return _outcome(False, "self_host_topology_bundle_report_stale", detail)
    detail["message"] = f"Self-host topology bundle gate report is at most {max_age_s} s old."
    return _outcome(True, None, detail)


# --- serving-mode boundary gate ---------------------------------------------------------------

POLICY_SCHEMA_VERSION = "NooterraServingModeBoundaryPolicy.v1"
MODES = ("hosted", "self-host", "local-dev")
GLOBAL_CHECK_IDS = ("serving_mode_declared", "serving_mode_policy_binding", "serving_mode_contract_match")
PARITY_CONTROL_IDS = (
    "kernel_conformance",
    "offline_verify_reproducibility",
    "hosted_baseline_evidence",
    "self_host_topology_bundle_gate",
    "self_host_upgrade_migration_gate",
    "paid_or_high_risk_customer_traffic",
)
PARITY_VALUES = ("required", "not-applicable", "forbidden")
_BOUNDARY_DOC = tuple(
    js_regex(s)
    for s in (
        "/^#\\s+Serving Modes Boundary$/m",
        "/NooterraServingModeBoundaryPolicy\\.v1/u",
        "/hosted/iu",
        "/self-host/iu",
        "/local[- ]dev/iu",
        "/fail-closed/iu",
    )
)
_BOUNDARY_REFERENCE = js_regex("/docs\\/ops\\/SERVING_MODES_BOUNDARY\\.md/u")
_NO_INLINE_SECRETS = js_regex('/PROXY_ALLOW_INLINE_SECRETS:\\s*"0"/u')
_OPS_TOKEN_FAIL_CLOSED = js_regex('/PROXY_OPS_TOKENS:\\s*"\\$\\{NOOTERRA_OPS_TOKEN:\\?/u')
_HELM_NO_INLINE = js_regex("/^\\s*allowInlineSecrets:\\s*false\\s*$/m")


def policy_problems(policy: Any) -> list[str]:
    """Every way ``policy`` falls short of the serving-mode policy contract, sorted."""
    problems: list[str] = []
    if member(policy, "schemaVersion") != POLICY_SCHEMA_VERSION:
        problems.append(f"schemaVersion must be {POLICY_SCHEMA_VERSION}")
    if not optional_string(member(policy, "policyId")):
        problems.append("policyId is required")
    if member(policy, "failClosedOnContractMismatch") is not True:
        problems.append("failClosedOnContractMismatch must be true")
    allowed_raw = member(policy, "allowedModes")
    allowed = [js_string(m) for m in allowed_raw] if isinstance(allowed_raw, list) else []
    problems += [f"allowedModes must include {m}" for m in MODES if m not in allowed]

    global_raw = member(policy, "globalChecks")
    global_checks = global_raw if isinstance(global_raw, list) else []
    global_ids = [js_string(member(row, "checkId")) for row in global_checks]
    problems += [
        f"globalChecks missing required checkId: {c}" for c in GLOBAL_CHECK_IDS if c not in global_ids
    ]
    for row in global_checks:
        label = js_string(member(row, "checkId")) if member(row, "checkId") is not None else "?"
        for key in ("requiredReasonCodes", "mismatchReasonCodes"):
            if not _non_empty_array(member(row, key)):
                problems.append(f"globalChecks.{label}.{key} must be non-empty")

    modes_raw = member(policy, "modes")
    by_mode: dict[str, Any] = {}
    for row in modes_raw if isinstance(modes_raw, list) else []:
        by_mode[js_string(member(row, "mode"))] = row
    for mode in MODES:
        if mode not in by_mode:
            problems.append(f"modes missing required mode entry: {mode}")
            continue
        row = by_mode[mode]
        for key in ("requiredRuntimeComponents", "requiredEvidence"):
            if not _non_empty_array(member(row, key)):
                problems.append(f"modes.{mode}.{key} must be non-empty")
        checks_raw = member(row, "checks")
        checks = checks_raw if isinstance(checks_raw, list) else []
        if not checks:
            problems.append(f"modes.{mode}.checks must be non-empty")
        for check in checks:
            label = js_string(member(check, "checkId")) if member(check, "checkId") is not None else "?"
            for key in ("requiredReasonCodes", "mismatchReasonCodes"):
                if not _non_empty_array(member(check, key)):
                    problems.append(f"modes.{mode}.checks.{label}.{key} must be non-empty")

    local = member(by_mode.get("local-dev"), "trustBoundary")
    for key in ("customerTrafficAllowed", "productionCutoverAllowed"):
        if member(local, key) is not False:
            problems.append(f"modes.local-dev.trustBoundary.{key} must be false")
    for mode in ("hosted", "self-host"):
        boundary = member(by_mode.get(mode), "trustBoundary")
        for key in ("mustNeverBeOnlyJudge", "offlineVerificationRequired"):
            if member(boundary, key) is not True:
                problems.append(f"modes.{mode}.trustBoundary.{key} must be true")

    parity_raw = member(policy, "parityMatrix")
    parity = parity_raw if isinstance(parity_raw, list) else []
    control_ids = [js_string(member(row, "controlId")) for row in parity]
    problems += [
        f"parityMatrix missing required controlId: {c}" for c in PARITY_CONTROL_IDS if c not in control_ids
    ]
    for row in parity:
        label = js_string(member(row, "controlId")) if member(row, "controlId") is not None else "?"
        for mode in MODES:
            if optional_string(member(row, mode)) not in PARITY_VALUES:
                problems.append(
                    f"parityMatrix.{label}.{mode} must be one of required|not-applicable|forbidden"
                )
    return locale_sorted(problems)


def policy_shape_and_contract_valid(policy: FileRead) -> Outcome:
    """``policy_shape_and_contract_valid``: the serving-mode policy is complete and fail-closed."""
    value, error = parse_json(policy)
    if error is not None:
        return _outcome(
            False,
            "policy_missing_or_invalid",
            {
                "path": policy.path,
                "message": f"Serving mode policy is required and must be valid JSON: {error}",
            },
        )
    problems = policy_problems(value)
    return _outcome(
        not problems,
        "policy_shape_or_contract_invalid",
        {
            "path": policy.path,
            "sha256": policy.sha256,
            "schemaVersion": optional_string(member(value, "schemaVersion")),
            "problems": problems,
            "message": "Serving mode policy schema or contract shape is invalid."
            if problems
            else "Serving mode policy schema and contract shape are valid.",
        },
    )


def boundary_doc_present_and_referenced(doc: FileRead) -> Outcome:
    """``boundary_doc_present_and_referenced``: the boundary doc names the policy, the modes and fail-closed."""
    failed = _read_or_fail(doc, "boundary_doc_missing_or_unreadable", "Serving mode boundary doc is required")
    if failed is not None or doc.text is None:
        return failed or _never()
    missing = locale_sorted(_missing(_BOUNDARY_DOC, doc.text))
    return _outcome(
        not missing,
        "boundary_doc_missing_required_sections",
        {
            "path": doc.path,
            "sha256": doc.sha256,
            "missingPatterns": missing,
            "message": "Serving mode boundary doc is missing required sections."
            if missing
            else "Serving mode boundary doc is present with required sections.",
        },
    )


def development_doc_references_mode_boundary_contract(doc: FileRead) -> Outcome:
    """``development_doc_references_mode_boundary_contract``: the development doc points at the boundary doc."""
    return _file_matches(
        doc,
        _BOUNDARY_REFERENCE,
        unreadable=("development_doc_missing_or_unreadable", "Unable to read development docs"),
        code="development_doc_missing_boundary_reference",
        passed="Development docs reference serving mode boundary contract.",
        failed="Development docs must reference serving mode boundary contract.",
    )


def minimum_topology_doc_references_mode_boundary_contract(doc: FileRead) -> Outcome:
    """``minimum_topology_doc_references_mode_boundary_contract``: the topology doc points at the boundary doc."""
    return _file_matches(
        doc,
        _BOUNDARY_REFERENCE,
        unreadable=("minimum_topology_doc_missing_or_unreadable", "Unable to read minimum topology doc"),
        code="minimum_topology_doc_missing_boundary_reference",
        passed="Minimum topology doc references serving mode boundary contract.",
        failed="Minimum topology doc must reference serving mode boundary contract.",
    )


def self_host_compose_enforces_fail_closed_secret_contract(compose: FileRead) -> Outcome:
    """``self_host_compose_enforces_fail_closed_secret_contract``: no inline secrets, ops token required."""
    failed = _read_or_fail(
        compose, "self_host_compose_missing_or_unreadable", "Unable to read self-host compose topology"
    )
    if failed is not None or compose.text is None:
        return failed or _never()
    no_inline = _NO_INLINE_SECRETS.test(compose.text)
    token = _OPS_TOKEN_FAIL_CLOSED.test(compose.text)
    ok = no_inline and token
    return _outcome(
        ok,
        "self_host_compose_allows_inline_secrets"
        if not no_inline
        else "self_host_compose_ops_token_not_fail_closed",
        {
            "path": compose.path,
            "sha256": compose.sha256,
            "enforceNoInlineSecrets": no_inline,
            "opsTokenFailClosed": token,
            "message": "Self-host compose enforces inline-secret deny and fail-closed ops token binding."
            if ok
            else 'Self-host compose must enforce PROXY_ALLOW_INLINE_SECRETS="0" and fail-closed '
            "NOOTERRA_OPS_TOKEN binding.",
        },
    )


def helm_values_enforce_receiver_inline_secret_deny(values: FileRead) -> Outcome:
    """``helm_values_enforce_receiver_inline_secret_deny``: the chart's receiver refuses inline secrets."""
    return _file_matches(
        values,
        _HELM_NO_INLINE,
        unreadable=("helm_values_missing_or_unreadable", "Unable to read Helm values"),
        code="helm_values_receiver_inline_secret_not_disabled",
        passed="Helm receiver defaults disable inline secrets.",
        failed="Helm receiver defaults must set allowInlineSecrets=false.",
    )


# Extensions: the deployment's declared serving mode, evaluated against the policy, fail-closed.


def _codes(policy: Any, check_id: str, *, mode: str | None = None) -> tuple[str | None, str | None]:
    """The first required and mismatch reason codes of a policy check (global, or of ``mode``)."""
    if mode is None:
        rows = member(policy, "globalChecks")
    else:
        entry = next(
            (r for r in _list(member(policy, "modes")) if js_string(member(r, "mode")) == mode), None
        )
        rows = member(entry, "checks")
    for row in _list(rows):
        if member(row, "checkId") == check_id:
            return _first_code(member(row, "requiredReasonCodes")), _first_code(
                member(row, "mismatchReasonCodes")
            )
    return None, None


def _first_code(codes: Any) -> str | None:
    return codes[0] if _non_empty_array(codes) and isinstance(codes[0], str) else None


def serving_mode_declared(policy: Any, serving_mode: str | None) -> Outcome:
    """Extension ``serving_mode_declared``: the deployment declares one of the policy's allowed modes."""
    mode = js_trim(serving_mode or "")
    allowed_raw = member(policy, "allowedModes")
    allowed = [m for m in allowed_raw if isinstance(m, str)] if isinstance(allowed_raw, list) else []
    required, mismatch = _codes(policy, "serving_mode_declared")
    detail: dict[str, Any] = {
        "servingMode": mode or None,
        "allowedModes": allowed,
        "policyId": optional_string(member(policy, "policyId")),
    }
    if required is None or mismatch is None:
        detail["message"] = "Serving mode policy defines no serving_mode_declared reason codes (fail-closed)."
        return _outcome(False, "SERVING_MODE_CONTRACT_REQUIRED", detail)
    if not mode:
        detail["message"] = "servingMode must be declared explicitly (hosted or self-host)."
        return _outcome(False, required, detail)
    if mode not in allowed:
        detail["message"] = f"servingMode {mode!r} is not a mode the policy allows ({', '.join(allowed)})."
        return _outcome(False, mismatch, detail)
    detail["message"] = f"servingMode {mode} is declared and allowed by the policy."
    return _outcome(True, None, detail)


def serving_mode_contract_match(policy: Any, serving_mode: str) -> Outcome:
    """Extension ``serving_mode_contract_match``: the declared mode's contract admits production traffic.

    Fail-closed: a mode missing from the policy, a trust boundary that forbids customer traffic
    or production cutover (local-dev), paid traffic marked forbidden in the parity matrix, or a
    production mode that lets the operator be the only judge, is refused with the policy's codes.
    """
    mode = js_trim(serving_mode)
    _, contract_mismatch = _codes(policy, "serving_mode_contract_match")
    contract_mismatch = contract_mismatch or "SERVING_MODE_CONTRACT_MISMATCH"
    entry = next((r for r in _list(member(policy, "modes")) if js_string(member(r, "mode")) == mode), None)
    boundary = member(entry, "trustBoundary")
    reasons: list[str] = []
    if entry is None:
        reasons.append(contract_mismatch)
    for key, suffix in (
        ("customerTrafficAllowed", "customer_traffic_forbidden"),
        ("productionCutoverAllowed", "production_cutover_forbidden"),
    ):
        if member(boundary, key) is False:
            check_id = f"{mode.replace('-', '_')}_{suffix}"
            reasons.append(_codes(policy, check_id, mode=mode)[1] or contract_mismatch)
    parity = next(
        (
            r
            for r in _list(member(policy, "parityMatrix"))
            if member(r, "controlId") == "paid_or_high_risk_customer_traffic"
        ),
        None,
    )
    if optional_string(member(parity, mode)) != "required":
        reasons.append(contract_mismatch)
    if entry is not None and member(boundary, "customerTrafficAllowed") is not False:
        for key in ("mustNeverBeOnlyJudge", "offlineVerificationRequired"):
            if member(boundary, key) is not True:
                reasons.append(contract_mismatch)
    reasons = list(dict.fromkeys(reasons))
    ok = not reasons
    return _outcome(
        ok,
        reasons[0] if reasons else None,
        {
            "servingMode": mode,
            "trustBoundary": boundary if isinstance(boundary, dict) else None,
            "reasonCodes": reasons,
            "message": f"Serving mode {mode} admits production customer traffic under the policy."
            if ok
            else f"Serving mode {mode} must not serve production customer traffic ({', '.join(reasons)}).",
        },
    )
