"""Errors raised by the conformance engine.

The hierarchy is documented once, here::

    GatesError                      base of everything the engine raises on purpose
    ├── ConfigError                 bad input: profile, gate file, argument (exit code 2)
    └── ProbeError                  a probe could not observe; the check outcome is `error`
        ├── ProbeTimeout            connect/read/total deadline exceeded
        ├── ProbeUnreachable        reset, DNS failure, no route
        │   └── ConnectionRefused   the host refused the connection: an observation (the check fails)
        ├── NoSystemd               the target runs no systemd: its units and timers cannot be observed
        ├── ProbeProtocolError      the peer answered something that is not the protocol asked for
        ├── ProbeResponseTooLarge   the response exceeded the configured size cap
        ├── ProbeOutputTooLarge     a command on the target wrote more than the output cap
        ├── ProbeMemoryExceeded     observing took more memory than the check run may use
        ├── Undetermined            observations exist but cannot decide the check
        └── DrillRefused            a drill would write where it must not (e.g. its scratch copy is production)
        └── SpendNotAllowed         observing would spend more than the run allows

Foreign exceptions (httpx, psycopg, redis, OSError) are translated into `ProbeError`
subclasses at the probe boundary, so that "could not determine" never turns into
"pass" or into a plain "fail".
"""

from __future__ import annotations

import errno
from typing import ClassVar


class GatesError(Exception):
    """Base class of every error the engine raises on purpose."""

    exit_code: ClassVar[int] = 3


class ConfigError(GatesError):
    """Invalid input: a profile, gate definition, report or argument.

    ``source`` names the file (or ``<argument>``) and ``location`` the place inside it,
    so the message can point an operator at the exact line to fix.
    """

    exit_code: ClassVar[int] = 2

    def __init__(self, message: str, *, source: str | None = None, location: str | None = None) -> None:
        self.message = message
        self.source = source
        self.location = location
        super().__init__(self.render())

    def render(self) -> str:
        """Return the one-paragraph message shown to the user."""
        where = ""
        if self.source and self.location:
            where = f"{self.source}: {self.location}: "
        elif self.source:
            where = f"{self.source}: "
        return f"{where}{self.message}"


class ProbeError(GatesError):
    """A probe could not observe the target; the check outcome becomes `error`."""

    reason_code: ClassVar[str] = "probe_error"


class ProbeTimeout(ProbeError):
    """The target did not answer within the connect, read or total deadline."""

    reason_code: ClassVar[str] = "probe_timeout"


class ProbeUnreachable(ProbeError):
    """The connection was refused or reset, or the name did not resolve."""

    reason_code: ClassVar[str] = "probe_unreachable"


class ConnectionRefused(ProbeUnreachable):
    """The host answered the connection with a refusal: nothing listens on a port the profile says must listen.

    Unlike the other probe errors this is an observation of the target, not a failure to observe
    it, so a check it reaches *fails* (reason ``connection_refused``) instead of erroring.
    """

    reason_code: ClassVar[str] = "connection_refused"

    def __init__(self, message: str, *, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


def is_refusal(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it was raised from) is a refused TCP connection (ECONNREFUSED)."""
    seen = 0
    while exc is not None and seen < 16:
        if isinstance(exc, ConnectionRefusedError) or (
            isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED
        ):
            return True
        if "Connection refused" in str(exc) or "[Errno 111]" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class NoSystemd(ProbeError):
    """The target runs no systemd (PID 1 is something else), so a unit or timer cannot be observed there."""

    reason_code: ClassVar[str] = "no_systemd"


class ProbeTlsError(ProbeError):
    """The TLS handshake failed: the certificate did not verify for the name, or the peer speaks no TLS."""

    reason_code: ClassVar[str] = "probe_tls_error"


class ProbeProtocolError(ProbeError):
    """The peer answered, but not in the protocol the probe speaks."""

    reason_code: ClassVar[str] = "probe_protocol_error"


class ProbeResponseTooLarge(ProbeError):
    """The response exceeded the configured size cap and was cut off."""

    reason_code: ClassVar[str] = "probe_response_too_large"


class ProbeOutputTooLarge(ProbeError):
    """A command run on the target wrote more than the output cap; it was stopped."""

    reason_code: ClassVar[str] = "probe_output_too_large"


class ProbeMemoryExceeded(ProbeError):
    """A probe ran out of memory under the check run's memory limit (``--memory-limit-mb``)."""

    reason_code: ClassVar[str] = "probe_memory_limit"


class Undetermined(ProbeError):
    """The observations taken cannot decide the check (a prerequisite is missing or ambiguous)."""

    reason_code: ClassVar[str] = "undetermined"


class JobRunning(Undetermined):
    """A scheduled job is running right now: systemd cleared its last run's outcome when this run began."""

    reason_code: ClassVar[str] = "job_running"


class DrillRefused(ProbeError):
    """A drill refused to start: what it would write to is not a scratch target (nothing was changed)."""

    reason_code: ClassVar[str] = "drill_refused"


class SpendNotAllowed(ProbeError):
    """Observing would spend more than the run allows (``--allow-spend-cents``), so it was not done."""

    reason_code: ClassVar[str] = "spend_not_allowed"
