"""Configuration: environment files exist and carry exactly the declared values."""

from __future__ import annotations

import re

from conformance.checks import check, expect
from conformance.envfile import ParsedEnv, parse_env
from conformance.errors import Undetermined
from conformance.probes.files import FileContent, ReadFile
from conformance.profile import EnvFile, Profile
from conformance.redact import Redactor
from conformance.suite import _select

_MASK = Redactor()


def read_env(_: Profile, env: EnvFile) -> ReadFile:
    """Read the environment file on the host."""
    return ReadFile(path=env.path)


def _parsed(env: EnvFile, obs: FileContent) -> ParsedEnv:
    if not obs.readable or obs.text is None:
        raise Undetermined(
            f"{env.path} cannot be read ({obs.error}); see config.env.file_readable[{env.name}]"
        )
    return parse_env(obs.text)


@check(
    "config.env.file_readable",
    title="The environment file exists and is readable",
    targets=_select.env_files,
    observe=read_env,
    remediation="Install {path} (the service's EnvironmentFile=) with the declared keys.",
)
def test_env_file_readable(target: EnvFile, obs: FileContent) -> None:
    """The file exists and its content can be read."""
    state = "readable" if obs.readable else ("missing" if not obs.exists else f"unreadable: {obs.error}")
    expect(
        obs.readable,
        f"{target.path} is {state}",
        reason="env_file_missing" if not obs.exists else "env_file_unreadable",
        observed=state,
        expected="readable",
    )


@check(
    "config.env.keys_present",
    title="Every declared key is assigned in the environment file",
    targets=_select.env_files,
    observe=read_env,
    remediation="Add the missing keys to {path} and restart the services that read it.",
)
def test_env_keys_present(target: EnvFile, obs: FileContent) -> None:
    """All declared keys are present, and keys declared without a value are not empty."""
    env = _parsed(target, obs).effective()
    required = [k for k, _ in target.values] + list(target.keys)
    missing = sorted(k for k in required if k not in env or (k in target.keys and not env[k]))
    expect(
        not missing,
        f"{target.path} lacks {', '.join(missing)}",
        reason="env_keys_missing",
        observed=sorted(set(required) - set(missing)),
        expected=sorted(set(required)),
    )


@check(
    "config.env.values_exact",
    title="Declared keys carry exactly the declared values",
    targets=_select.env_files,
    observe=read_env,
    remediation="Set the listed keys in {path} to the declared values and restart the services that read it.",
)
def test_env_values_exact(target: EnvFile, obs: FileContent) -> None:
    """Every declared key that is present has exactly the declared value (the last assignment counts)."""
    env = _parsed(target, obs).effective()
    wrong = {k: (env[k], v) for k, v in target.values if k in env and env[k] != v}
    observed = {k: _MASK.mask_value(k, got) for k, (got, _) in sorted(wrong.items())}
    expected = {k: _MASK.mask_value(k, want) for k, (_, want) in sorted(wrong.items())}
    detail = "; ".join(f"{k}={observed[k]!r} (expected {expected[k]!r})" for k in sorted(wrong))
    expect(
        not wrong,
        f"{target.path}: {detail}",
        reason="env_value_mismatch",
        observed=observed,
        expected=expected,
    )


@check(
    "config.env.no_duplicate_keys",
    title="No key is assigned twice in the environment file",
    targets=_select.env_files,
    observe=read_env,
    remediation="Remove the repeated assignments from {path}: the last one silently wins.",
    severity="medium",
)
def test_env_no_duplicate_keys(target: EnvFile, obs: FileContent) -> None:
    """Each key is assigned once, so no later line silently shadows an earlier one."""
    dupes = _parsed(target, obs).duplicates()
    detail = ", ".join(f"{k} (lines {', '.join(map(str, lines))})" for k, lines in sorted(dupes.items()))
    expect(
        not dupes,
        f"{target.path} assigns {detail} more than once",
        reason="env_duplicate_keys",
        observed=sorted(dupes),
        expected=[],
    )


@check(
    "config.env.values_match",
    title="Keys with a declared form carry a value of that form",
    targets=_select.env_files_with_patterns,
    observe=read_env,
    remediation="Give the listed keys in {path} values of the declared form and restart the services that read "
    "them.",
)
def test_env_values_match(target: EnvFile, obs: FileContent) -> None:
    """Every key with a declared pattern is present and its value matches the pattern in full."""
    env = _parsed(target, obs).effective()
    wrong = sorted(k for k, pattern in target.patterns if k not in env or not re.fullmatch(pattern, env[k]))
    observed = {k: (_MASK.mask_value(k, env[k]) if k in env else "<absent>") for k in wrong}
    expected = {k: f"matches {p}" for k, p in target.patterns if k in wrong}
    detail = "; ".join(f"{k}={observed[k]!r} (expected to match {dict(target.patterns)[k]!r})" for k in wrong)
    expect(
        not wrong,
        f"{target.path}: {detail}",
        reason="env_value_malformed",
        observed=observed,
        expected=expected,
    )


@check(
    "config.env.keys_absent",
    title="Keys that must not be set are absent from the environment file",
    targets=_select.env_files_with_absent,
    observe=read_env,
    remediation="Remove the listed keys from {path} (they enable a mode the deployment must not run in) and "
    "restart the services that read it.",
)
def test_env_keys_absent(target: EnvFile, obs: FileContent) -> None:
    """None of the forbidden keys is assigned (even to an empty value)."""
    env = _parsed(target, obs).effective()
    present = sorted(k for k in target.absent if k in env)
    expect(
        not present,
        f"{target.path} assigns {', '.join(present)}",
        reason="env_forbidden_keys",
        observed=present,
        expected=[],
    )
