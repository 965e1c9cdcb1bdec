"""When a request or a watch is tried again, and after how long: pure decisions, shared by
``Client`` and ``AsyncClient`` (which do the waiting, each in its own way)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import grpc

from qorch.client._errors import QorchError, Timeout, error_for_grpc
from qorch.client._models import JobEvent

#: Answers after which a request that may be sent again is: the API (or a proxy in front of
#: it) could not answer now.
RETRY_STATUSES = frozenset({502, 503, 504})

#: How a stream that was dropped ends: the connection went (UNAVAILABLE), or broke mid-message
#: (INTERNAL, UNKNOWN: e.g. a reset stream). A new stream resumes after the last event seen.
RESUMABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
)


@dataclass(frozen=True)
class RetryPolicy:
    """Requests that may be sent again are, up to ``max_retries`` times, after a connection
    error or a 502/503/504: after the ``Retry-After`` the API asked for (at most ``cap_s``),
    else after an exponential pause from ``base_s`` with jitter."""

    max_retries: int = 2
    base_s: float = 0.5
    cap_s: float = 8.0

    def pause(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (``attempt`` from 0)."""
        if retry_after is not None:
            return min(self.cap_s, retry_after)
        return min(self.cap_s, self.base_s * 2**attempt) * random.uniform(0.5, 1.0)


@dataclass
class Resumption:
    """Where a watch stands: the last event seen, the failures since the last event came, and
    the deadline of the whole watch (``time.monotonic()``; None: none). A dropped stream is
    resumed after the last event, so nothing is missed or repeated, after a pause that doubles
    from ``base_s`` up to ``cap_s``; ``retries`` failures in a row without an event end it."""

    last_seq: int
    retries: int = 10
    deadline: float | None = None
    base_s: float = 0.2
    cap_s: float = 5.0
    failures: int = 0

    def seen(self, event: JobEvent) -> None:
        self.last_seq = event.seq
        self.failures = 0

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no deadline); Timeout once it passed."""
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Timeout(f"the watch ran past its timeout (last event seen: {self.last_seq})")
        return left

    def pause_after(self, code: grpc.StatusCode, details: str) -> float:
        """Seconds to wait before resuming after a stream ended with ``code``; raises what the
        caller should see when it should not be resumed (not a dropped stream, too many
        failures in a row, or no time left for the pause)."""
        if code not in RESUMABLE or self.failures >= self.retries:
            raise self.error(code, details)
        self.failures += 1
        pause = min(self.cap_s, self.base_s * 2**self.failures)
        left = self.remaining()
        if left is not None and pause >= left:
            raise Timeout(f"the watch ran past its timeout (last event seen: {self.last_seq})")
        return pause

    def error(self, code: grpc.StatusCode, details: str) -> QorchError:
        failures = f" (after {self.failures} attempts to resume)" if self.failures else ""
        return error_for_grpc(code, details + failures)
