"""Keeping Python's full garbage collections short in long-running services.

A service imports Braket, sympy, SQLAlchemy, gRPC and protobuf before it serves: several
hundred thousand objects that live as long as the process. CPython's full (generation 2)
collection walks every tracked object, so each one took 100-330 ms in the API, the orchestrator
and the agents, measured with ``gc.callbacks`` during ``bench/latency.py`` on the 2-core
development machine. It stops the process's threads, so every event in flight waits that long:
the tail of the event latency. :func:`freeze_startup_heap` moves what exists once the service is
set up into CPython's permanent generation, which collections never walk; later full
collections only walk what the service allocated since.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


def freeze_startup_heap() -> int:
    """Collect once, then exclude every object alive now from later collections.

    Call when a service finished setting up and before it serves. Frozen objects are still
    freed by reference counting; only cycles among them are never collected, which for the
    modules, classes and caches built at start-up is what they are anyway. Returns the number
    of objects frozen.
    """
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.debug("start-up heap frozen", extra={"objects": frozen})
    return frozen
