"""Read a deployment-bundle file as Node.js ``fs.readFile(path, "utf8")`` would, through the host backend."""

from __future__ import annotations

import base64
import binascii
import hashlib
import posixpath
from dataclasses import dataclass

from conformance.errors import ProbeError, ProbeResponseTooLarge
from conformance.nooterra import FileRead
from conformance.probes.base import Context

# One command: the absolute path (as the target's shell resolves it), a status, then the bytes in base64.
_READ = r"""p="$1"
case "$p" in /*) ;; *) p="$PWD/$p" ;; esac
printf '%s\n' "$p"
if [ ! -e "$p" ]; then echo ENOENT
elif [ -d "$p" ]; then echo EISDIR
elif ! head -c 0 -- "$p" 2>/dev/null; then echo EACCES
else echo ok; head -c "$2" -- "$p" | base64 | tr -d '\n'; fi
"""

_NODE_ERRORS = {
    "ENOENT": "ENOENT: no such file or directory, open '{path}'",
    "EACCES": "EACCES: permission denied, open '{path}'",
    "EISDIR": "EISDIR: illegal operation on a directory, read",
}


def resolve_path(path: str) -> str:
    """Node's ``path.resolve`` for an absolute POSIX path: lexically normalized, no trailing slash."""
    normal = posixpath.normpath(path)
    return "/" + normal.lstrip("/") if normal.startswith("//") else normal


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleRead:
    """Read ``path`` (relative paths resolve against the target shell's working directory)."""

    path: str
    max_bytes: int = 4 << 20

    def observe(self, ctx: Context) -> FileRead:
        """A missing, unreadable or directory path is an observation; a host we cannot reach is not."""
        result = ctx.host.run("sh -c %s gates-bundle-read %s %s", _READ, self.path, str(self.max_bytes + 1))
        lines = result.stdout.split("\n", 2)
        if result.rc != 0 or len(lines) < 2 or not lines[0].startswith("/"):
            raise ProbeError(f"cannot read {self.path} on the target: {result.stderr.strip() or result.rc}")
        path, status = resolve_path(lines[0]), lines[1]
        if status in _NODE_ERRORS:
            return FileRead(path=path, text=None, sha256=None, error=_NODE_ERRORS[status].format(path=path))
        if status != "ok" or len(lines) < 3:
            raise ProbeError(f"unexpected answer while reading {self.path}: {result.stdout[:120]!r}")
        try:
            data = base64.b64decode(lines[2].strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProbeError(f"unexpected answer while reading {self.path}: {exc}") from exc
        if len(data) > self.max_bytes:
            raise ProbeResponseTooLarge(f"{path} is larger than {self.max_bytes} bytes")
        text = data.decode("utf-8", errors="replace")  # as Node decodes "utf8": U+FFFD for invalid bytes
        digest = hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()
        return FileRead(path=path, text=text, sha256=digest, error=None)
