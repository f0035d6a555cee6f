"""systemd unit files as ``systemctl cat`` prints them: the settings a unit's own files assign.

``systemctl show`` gives every setting's effective value, defaults included (and the env files with
specifiers such as ``%i`` expanded); a starting profile should declare only the sandboxing the unit's
author chose, and needs a few settings show does not give (``ExecStart=`` as written, ``Timer.Unit=``).
Later assignments add to list settings, an empty assignment resets one, as systemd reads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Settings whose assignments accumulate (an empty assignment clears them).
_LISTS = {"EnvironmentFile", "ReadWritePaths", "ExecStart", "OnCalendar", "RestrictAddressFamilies"}
HARDENING = ("NoNewPrivileges", "PrivateTmp", "ProtectSystem", "ProtectHome", "ProtectKernelTunables",
             "ProtectKernelModules", "ProtectControlGroups", "RestrictSUIDSGID", "LockPersonality",
             "RestrictAddressFamilies", "UMask")  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitSettings:
    """The assignments of a unit's files, per ``Section.Key``, in load order (after resets)."""

    files: tuple[str, ...]
    settings: tuple[tuple[str, tuple[str, ...]], ...]

    def values(self, key: str) -> tuple[str, ...]:
        """Every value of ``Section.Key`` (e.g. ``Service.EnvironmentFile``)."""
        return next((v for k, v in self.settings if k == key), ())

    def last(self, key: str) -> str | None:
        """The value that takes effect for a single-valued setting."""
        values = self.values(key)
        return values[-1] if values else None

    def hardening_keys(self) -> list[str]:
        """The sandboxing settings the unit's files assign, in `HARDENING` order."""
        return [k for k in HARDENING if self.values(f"Service.{k}")]


def parse_unit(text: str) -> UnitSettings:
    """Parse unit-file text (one file, or ``systemctl cat``'s files each headed by ``# /path``)."""
    files: list[str] = []
    settings: dict[str, list[str]] = {}
    section = ""
    pending = ""
    for raw in text.splitlines():
        if raw.startswith("# /") and not pending:
            files.append(raw[2:].strip())
            section = ""
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line or line[0] in "#;":
            continue
        m = re.fullmatch(r"\[([A-Za-z0-9_-]+)\]", line)
        if m:
            section = m.group(1)
            continue
        key, sep, value = line.partition("=")
        if not sep or not section:
            continue
        name = f"{section}.{key.strip()}"
        value = value.strip()
        if key.strip() in _LISTS:
            if value == "":
                settings[name] = []
            else:
                settings.setdefault(name, []).append(value)
        else:
            settings[name] = [value]
    return UnitSettings(files=tuple(files), settings=tuple((k, tuple(v)) for k, v in settings.items() if v))
