"""A burst against a token-bucket rate limit, sized from the limit the deployment declares.

Nooterra's API keeps one bucket per tenant: it holds at most ``PROXY_RATE_LIMIT_BURST`` tokens
(default ``PROXY_RATE_LIMIT_RPM``), refills ``RPM / 60000`` tokens per millisecond and spends one on
every request but ``/health(z)``; an empty bucket answers 429 with ``retry-after``, and an RPM of
0 (unset) disables the limit (upstream ``src/api/app.js:659-684``, ``1889-1906``, ``34703-34714``).
So whatever the certifier's speed, a burst that lasted ``t`` ms cannot be admitted more than
``burst + t * rpm / 60000`` times. Past that bound without a 429 the limit is provably not
enforced; a burst that ends below it (too slow to empty the bucket) proves nothing either way. The
profile points the burst at a cheap route (``GET /capabilities``: public and static, yet charged to the
bucket like every route but ``/health(z)``), so that even a production-sized bucket can be emptied.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from conformance.envfile import parse_env
from conformance.probes.apart import API_VIEW
from conformance.probes.base import Context
from conformance.probes.files import ReadFile
from conformance.probes.http import HttpGet

RPM_KEY = "PROXY_RATE_LIMIT_RPM"
BURST_KEY = "PROXY_RATE_LIMIT_BURST"


@dataclass(frozen=True, slots=True, kw_only=True)
class BucketLimit:
    """A tenant bucket as the API builds it from its environment (``rpm`` 0: no limit)."""

    rpm: float
    burst: float
    source: str  # where it was read

    def admits_at_most(self, elapsed_ms: float) -> float:
        """The most requests the bucket can admit within ``elapsed_ms`` of its first one."""
        return self.burst + elapsed_ms * self.rpm / 60_000


def _number(raw: str | None) -> float | None:
    """JavaScript ``Number()`` of a non-blank setting (None: blank or not a finite number)."""
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def bucket_limit(env: dict[str, str], source: str) -> BucketLimit | None:
    """The tenant bucket the API builds from ``env``; None when a set value would stop it from starting."""
    rpm_raw, burst_raw = env.get(RPM_KEY), env.get(BURST_KEY)
    if rpm_raw is None or not rpm_raw.strip():
        return BucketLimit(rpm=0, burst=0, source=source)
    rpm = _number(rpm_raw)
    if rpm is None or rpm <= 0:
        return None
    burst = _number(burst_raw) if burst_raw is not None and burst_raw.strip() else rpm
    if burst is None or burst <= 0:
        return None
    return BucketLimit(rpm=rpm, burst=burst, source=source)


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitBurstResult:
    """What a burst met, how long it took, and the limit it was sized from (if one was readable)."""

    url: str
    sent: int
    admitted: int  # answers other than 429: each spent a token
    elapsed_ms: float  # from sending the first request to the last answer
    statuses: tuple[tuple[int, int], ...]
    first_429_retry_after: str | None
    saw_429: bool
    limit: BucketLimit | None
    limit_error: str | None  # why no limit could be read (None when one was)
    exceeded: bool  # admitted more than the limit allows in elapsed_ms: the limit is not enforced
    out_of_time: bool

    def count(self, predicate: Callable[[int], bool]) -> int:
        """How many answers had a status for which ``predicate(status)`` holds."""
        return sum(n for status, n in self.statuses if predicate(status))


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitBurst:
    """Sequential requests until a 429, until the declared limit is provably exceeded, or out of time.

    ``env_path`` is the API's env file (the limit is read from it first); without a readable limit
    the burst sends at most ``max_requests``. The whole burst is bounded by four probe deadlines.
    """

    request: HttpGet
    env_path: str | None
    max_requests: int

    def _limit(self, ctx: Context) -> tuple[BucketLimit | None, str | None]:
        if self.env_path is None:
            return None, "the profile declares no API env file"
        content = ReadFile(path=self.env_path).observe(ctx)
        if not content.readable or content.text is None:
            return None, f"{self.env_path} cannot be read ({content.error})"
        limit = bucket_limit(parse_env(content.text).effective(), self.env_path)
        if limit is None:
            return None, f"{self.env_path}: {RPM_KEY}/{BURST_KEY} are not positive numbers"
        return limit, None

    def observe(self, ctx: Context) -> LimitBurstResult:
        """Read the limit, then send the burst (never beside a paid call: see `conformance.probes.apart`)."""
        with API_VIEW:
            return self._burst(ctx)

    def _burst(self, ctx: Context) -> LimitBurstResult:
        limit, limit_error = self._limit(ctx)
        bounded = limit is not None and limit.rpm > 0
        budget = time.monotonic() + 4 * ctx.settings.deadline_s
        statuses: Counter[int] = Counter()
        retry_after: str | None = None
        sent = admitted = 0
        exceeded = out_of_time = False
        started = time.monotonic()
        elapsed_ms = 0.0
        while bounded or sent < self.max_requests:
            if time.monotonic() >= budget:
                out_of_time = True
                break
            answer = self.request.observe(ctx)
            elapsed_ms = (time.monotonic() - started) * 1000
            sent += 1
            statuses[answer.status] += 1
            if answer.status == 429:
                retry_after = answer.header("retry-after")
                break
            admitted += 1
            # every admitted request reached the bucket after `started` and before now; one token of slack
            # for the bucket's clock and float rounding
            if limit is not None and bounded and admitted > limit.admits_at_most(elapsed_ms) + 1:
                exceeded = True
                break
        return LimitBurstResult(
            url=self.request.url,
            sent=sent,
            admitted=admitted,
            elapsed_ms=round(elapsed_ms, 1),
            statuses=tuple(sorted(statuses.items())),
            first_429_retry_after=retry_after,
            saw_429=statuses[429] > 0,
            limit=limit,
            limit_error=limit_error,
            exceeded=exceeded,
            out_of_time=out_of_time,
        )
