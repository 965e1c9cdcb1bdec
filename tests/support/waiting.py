"""Waiting on a condition with a deadline: the only way tests wait for asynchronous effects."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None], timeout: float, interval: float = 0.05, what: str = ""
) -> T:
    """Call ``condition`` until it returns something truthy, and return that; else fail."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition!r}: {last!r}")
