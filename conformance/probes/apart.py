"""Keep the suite's own ``/ops`` traffic apart from a paid call in flight.

Upstream Nooterra's API reloads its whole in-memory view from PostgreSQL on every ``/ops`` request,
emptying it first (``src/api/app.js:37758-37762``, ``src/db/store-pg.js:150-194``). A paid call whose
gateway verifies its gate during such a reload is answered "gate not found" and fails, as observed
when the rate-limit burst (``/ops/status``) ran beside the paid call. So probes that send ``/ops``
requests and the paid call take one lock: a verdict must not depend on how the suite schedules its
own probes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

from conformance.probes.base import Context, ProbeSpec

T = TypeVar("T")

# Held by the paid call for its whole flow and by each probe that sends /ops requests.
API_VIEW = threading.RLock()


@dataclass(frozen=True, slots=True, kw_only=True)
class ApartFromPaidCalls(Generic[T]):
    """Observe ``inner`` while no paid call is in flight (and no other such probe runs)."""

    inner: ProbeSpec[T]

    def observe(self, ctx: Context) -> T:
        """Observe ``inner`` under `API_VIEW`."""
        with API_VIEW:
            return self.inner.observe(ctx)
