"""The running process is the declared one: its environment is its env file's, its database its own.

The environment is read from ``/proc/<pid>/environ`` of the process listening on the service's port (over
SSH too). Secret keys are digested on the target and compared by digest; URLs lose their password there.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit

from conformance.checks import check, expect
from conformance.envfile import parse_env
from conformance.errors import Undetermined
from conformance.probes.files import FileContent, ReadFile
from conformance.probes.procenv import ListenerEnvDigest, Mode, RunningEnvironment
from conformance.profile import EnvFile, Profile, Service
from conformance.redact import MASK, is_secret_key

_SCHEMES = ("postgres", "postgresql", "redis", "rediss")


def _env_file(profile: Profile, svc: Service) -> EnvFile:
    return next(e for e in profile.env_files if e.name == svc.env_file)


def named_keys(env: EnvFile) -> tuple[str, ...]:
    """Every key the profile names for the file: declared values, required keys, declared forms."""
    keys = [k for k, _ in env.values] + list(env.keys) + [k for k, _ in env.patterns]
    return tuple(dict.fromkeys(keys))


def key_mode(env: EnvFile, key: str) -> Mode:
    """How a key is read from the process: URLs without their password, secrets as digests only."""
    declared = dict(env.values).get(key, "") + dict(env.patterns).get(key, "")
    if "://" in declared or key.endswith("_URL"):
        return "url"
    return "digest" if is_secret_key(key) else "value"


def with_env_file(profile: Profile) -> list[Service]:
    """Listening services that declare an env file."""
    return [s for s in profile.services if s.listens and s.env_file is not None and s.port]


def running_and_file(profile: Profile, svc: Service) -> tuple[ListenerEnvDigest, ReadFile]:
    """The listener's named keys (digested on the target) and the env file as it is now."""
    env = _env_file(profile, svc)
    keys = tuple((k, key_mode(env, k)) for k in named_keys(env))
    return ListenerEnvDigest(port=svc.port, keys=keys), ReadFile(path=env.path)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):[^@/]*@")  # as the target strips it (procenv)


def _shown(env: EnvFile, key: str, value: str | None) -> str | None:
    if value is None:
        return None
    mode = key_mode(env, key)
    return MASK if mode == "digest" else _PASSWORD.sub(r"\1@", value) if mode == "url" else value


@check(
    "process.env.matches_file",
    title="The process listening on the service's port runs with its env file's values for every key the "
    "profile names",
    targets=with_env_file,
    observe=running_and_file,
    remediation="Restart {name} so it loads its env file (the unit's EnvironmentFile=), and start it no other way: "
    "the running process and the file disagree.",
)
def test_process_env_matches_file(
    target: Service, obs: tuple[RunningEnvironment, FileContent], profile: Profile
) -> None:
    """Each named key the file assigns has the same value (secrets: the same sha256) in the running process."""
    running, content = obs
    env = _env_file(profile, target)
    if not content.readable or content.text is None:
        raise Undetermined(
            f"{env.path} cannot be read ({content.error}); see config.env.file_readable[{env.name}]"
        )
    on_file = parse_env(content.text).effective()
    observed: dict[str, object] = {}
    expected: dict[str, object] = {}
    for key in named_keys(env):
        if key not in on_file:
            continue  # config.env.keys_present says what the file lacks
        entry = running.entry(key)
        if entry is not None and entry.sha256 == _digest(on_file[key]):
            continue
        expected[key] = _shown(env, key, on_file[key])
        if entry is None:
            observed[key] = "<absent>"
        else:
            shown = entry.shown if entry.shown is not None else MASK
            observed[key] = shown if shown != expected[key] else f"{shown} (a secret part differs)"
    detail = "; ".join(f"{k}: running {observed[k]!r}, file {expected[k]!r}" for k in sorted(observed))
    expect(not observed,
           f"{target.name} (pid {running.pid} on port {target.port}) does not run with {env.path}: {detail}",
           reason="process_env_absent" if set(observed.values()) == {"<absent>"} else "process_env_differs",
           observed=observed, expected=expected)  # fmt: skip


# --- the database each service connects to -------------------------------------------------------


def _db(url: str | None) -> tuple[str, int | None, str] | None:
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme.split("+")[0] not in _SCHEMES:
        return None
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.hostname or "", port, parts.path.lstrip("/").split("?")[0])


def _label(db: tuple[str, int | None, str] | None) -> str | None:
    return None if db is None else f"{db[0]}:{db[1] or ''}/{db[2]}"


def database_keys(profile: Profile, svc: Service) -> tuple[tuple[str, tuple[str, int | None, str]], ...]:
    """The service's env-file keys whose declared value is a database URL, with the database each names."""
    if svc.env_file is None:
        return ()
    return tuple((k, db) for k, v in _env_file(profile, svc).values if (db := _db(v)) is not None)


def owners(profile: Profile) -> dict[tuple[str, int | None, str], str]:
    """Every declared database and the service that owns it (slot databases: the slot's api)."""
    out: dict[tuple[str, int | None, str], str] = {}
    for svc in with_env_file(profile):
        for _, db in database_keys(profile, svc):
            out.setdefault(db, svc.name)
    pg = next((s for s in profile.services if s.kind == "postgres"), None)
    if pg is not None:
        for slot in profile.slots:
            out.setdefault((pg.bind, pg.port, slot.database), slot.api)
    return out


def with_database(profile: Profile) -> list[Service]:
    """Listening services whose env file declares the database they connect to."""
    return [s for s in with_env_file(profile) if database_keys(profile, s)]


def running_database(profile: Profile, svc: Service) -> ListenerEnvDigest:
    """The listener's database URLs, without their passwords."""
    return ListenerEnvDigest(port=svc.port, keys=tuple((k, "url") for k, _ in database_keys(profile, svc)))


@check(
    "process.database.own",
    title="The process listening on the service's port connects to the service's own database, not another's",
    targets=with_database,
    observe=running_database,
    remediation="Start {name} with its own database URL (its env file's declared value) and restart it; a service "
    "on another service's database reads and writes that service's data.",
)
def test_process_database_own(target: Service, obs: RunningEnvironment, profile: Profile) -> None:
    """Each database URL in the running environment names the database the profile declares for the service."""
    owner = owners(profile)
    observed: dict[str, object] = {}
    expected: dict[str, object] = {}
    for key, want in database_keys(profile, target):
        entry = obs.entry(key)
        got = _db(entry.shown) if entry is not None else None
        if got == want:
            continue
        observed[key] = {"database": _label(got), "owner": owner.get(got) if got else None}
        expected[key] = {"database": _label(want), "owner": target.name}
    detail = "; ".join(
        f"{k} names {v['database'] or 'nothing'}"  # type: ignore[index]
        + (f" (owned by {v['owner']})" if v["owner"] else "")  # type: ignore[index]
        for k, v in sorted(observed.items())
    )
    foreign = any(v["owner"] not in (None, target.name) for v in observed.values())  # type: ignore[index]
    expect(not observed, f"{target.name} (pid {obs.pid}) runs on a database not its own: {detail}",
           reason="process_database_foreign" if foreign else "process_database_wrong",
           observed=observed, expected=expected)  # fmt: skip
