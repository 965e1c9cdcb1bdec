"""Keeps ``qorch up``'s services up: a child that dies is started again, with backoff.

An agent SIGKILLed or an orchestrator that crashed no longer takes the whole stack down: the
supervisor logs the exit, waits ``restart_delay`` (doubling with each exit that follows soon
after the last start, up to a cap), and starts the service again. Ctrl-C still stops everything
in order (``Stack.stop``). Only ``qorch up`` supervises; tests that kill services on purpose
drive the stack themselves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from qorch.stack import Stack

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    """How long to wait before starting a dead service again."""

    first_s: float = 1.0
    max_s: float = 60.0
    #: A service that ran this long before it died is healthy again: its backoff starts over.
    healthy_after_s: float = 60.0


def restart_delay(failures: int, policy: RestartPolicy) -> float:
    """The wait before the restart that follows ``failures`` quick exits in a row (1, 2, ...)."""
    return min(policy.max_s, policy.first_s * 2 ** max(0, failures - 1))


@dataclass
class _Watch:
    started_at: float
    failures: int = 0
    restart_at: float | None = None


@dataclass
class Supervisor:
    """Call ``check()`` every second or so; it restarts what died."""

    stack: Stack
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    clock: Callable[[], float] = time.monotonic
    restarts: int = 0
    _watches: dict[str, _Watch] = field(default_factory=dict)

    def check(self) -> None:
        """Schedule the restart of each service found dead; start those whose wait is over."""
        now = self.clock()
        for service in self.stack.services:
            watch = self._watches.setdefault(service.name, _Watch(started_at=now))
            proc = service.proc
            if proc is None or proc.poll() is None:
                continue
            if watch.restart_at is None:
                ran = now - watch.started_at
                watch.failures = 1 if ran >= self.policy.healthy_after_s else watch.failures + 1
                delay = restart_delay(watch.failures, self.policy)
                watch.restart_at = now + delay
                logger.warning(
                    "%s exited with %s after %.0f s; starting it again in %.0f s",
                    service.name,
                    proc.returncode,
                    ran,
                    delay,
                    extra={"service": service.name, "restart": watch.failures},
                )
            elif now >= watch.restart_at:
                self.stack.restart(service.name)
                self.restarts += 1
                watch.started_at, watch.restart_at = now, None
                logger.warning(
                    "%s started again (restart %d in a row)",
                    service.name,
                    watch.failures,
                    extra={"service": service.name, "restart": watch.failures},
                )
