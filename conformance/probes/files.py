"""File and path probes, run through the host backend (local or SSH)."""

from __future__ import annotations

from dataclasses import dataclass

from conformance.errors import ProbeError
from conformance.probes.base import Context

_PATH_SCRIPT = (
    'p="$1"; '
    'if [ -L "$p" ]; then echo link; readlink -- "$p"; else echo nolink; echo; fi; '
    'readlink -f -- "$p" || echo; '
    'if [ -d "$p" ]; then echo dir; elif [ -e "$p" ]; then echo file; else echo missing; fi'
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PathState:
    """What a path is: a symlink (and to what), a directory, a file, or nothing."""

    path: str
    is_symlink: bool
    link_text: str | None
    resolved: str | None
    kind: str  # "dir", "file" or "missing" (after following links)


@dataclass(frozen=True, slots=True, kw_only=True)
class PathInfo:
    """Inspect ``path`` without following it, then follow it."""

    path: str

    def observe(self, ctx: Context) -> PathState:
        """Run one small POSIX shell snippet on the host."""
        result = ctx.host.run("sh -c %s gates-path %s", _PATH_SCRIPT, self.path)
        lines = result.stdout.split("\n")
        if result.rc != 0 or len(lines) < 4:
            raise ProbeError(
                f"cannot inspect {self.path} on the target: {result.stderr.strip() or result.rc}"
            )
        return PathState(
            path=self.path,
            is_symlink=lines[0] == "link",
            link_text=lines[1] or None,
            resolved=lines[2] or None,
            kind=lines[3],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FileContent:
    """A file's text, or why it could not be read."""

    path: str
    exists: bool
    readable: bool
    text: str | None
    error: str | None


_READ = (
    'if [ ! -e "$1" ]; then echo missing; '
    'elif [ ! -r "$1" ] || ! head -c 0 -- "$1" 2>/dev/null; then echo unreadable; head -c 0 -- "$1" 2>&1; '
    'else echo ok; head -c "$2" -- "$1"; fi'
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadFile:
    """Read a text file on the host."""

    path: str
    max_bytes: int = 1_048_576

    def observe(self, ctx: Context) -> FileContent:
        """One command: a missing or unreadable file is an observation; a host we cannot reach is not."""
        result = ctx.host.run("sh -c %s gates-read %s %s", _READ, self.path, str(self.max_bytes + 1))
        status, _, text = result.stdout.partition("\n")
        if result.rc != 0 or status not in ("missing", "unreadable", "ok"):
            raise ProbeError(f"cannot run commands on the target: {result.stderr.strip() or result.rc}")
        if status == "missing":
            return FileContent(path=self.path, exists=False, readable=False, text=None, error="no such file")
        if status == "unreadable":
            return FileContent(path=self.path, exists=True, readable=False, text=None,
                               error=text.strip() or "permission denied")  # fmt: skip
        if len(text.encode()) > self.max_bytes:
            return FileContent(path=self.path, exists=True, readable=False, text=None,
                               error=f"larger than {self.max_bytes} bytes")  # fmt: skip
        return FileContent(path=self.path, exists=True, readable=True, text=text, error=None)


_NEWEST = r"""f=$(ls -1t -- $1 2>/dev/null | head -n 1)
[ -n "$f" ] || { echo none; exit 0; }
printf '%s\n%s\n%s\n' "$f" "$(stat -c %Y -- "$f")" "$(date +%s)"
head -c "$2" -- "$f"
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class NewestFile:
    """The newest file matching a glob on the host: its path, age and content."""

    path: str | None
    age_s: int | None
    text: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadNewest:
    """Find the newest match of ``glob`` and read it (age measured by the host's own clock)."""

    glob: str
    max_bytes: int = 1_048_576

    def observe(self, ctx: Context) -> NewestFile:
        """One shell command: list by mtime, stat, date, read."""
        result = ctx.host.run("bash -c %s gates-newest %s %s", _NEWEST, self.glob, str(self.max_bytes))
        if result.rc != 0:
            raise ProbeError(
                f"cannot look for {self.glob} on the target: {result.stderr.strip() or result.rc}"
            )
        lines = result.stdout.split("\n", 3)
        if lines[0] == "none":
            return NewestFile(path=None, age_s=None, text=None)
        if len(lines) < 4 or not lines[1].isdigit() or not lines[2].isdigit():
            raise ProbeError(f"unexpected answer while reading {self.glob}: {result.stdout[:120]!r}")
        return NewestFile(path=lines[0], age_s=int(lines[2]) - int(lines[1]), text=lines[3])
