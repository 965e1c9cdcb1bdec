"""Run one node agent as a process: ``qorch node --pool local-sv`` or ``python -m nodes``."""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

from nodes.agent import NodeAgent
from nodes.executors.base import ExecutionError
from qorch.config import Settings
from qorch.heap import freeze_startup_heap
from qorch.kafka import ensure_topics
from qorch.metrics import serve_metrics

logger = logging.getLogger(__name__)

#: Exit status when the agent cannot start: a pool that is neither local nor ``aws-*``. (An
#: ``aws-*`` pool this node lacks the configuration for starts, and fails its fragments at once.)
EXIT_CONFIG = 2


def lower_priority(nice: int) -> None:
    """Lower this process's CPU priority by ``nice`` (simulations yield to the control plane
    on a shared machine); a platform without ``os.nice`` keeps its priority."""
    if nice <= 0 or not hasattr(os, "nice"):
        return
    try:
        level = os.nice(nice)
    except OSError as exc:
        logger.warning("could not lower the agent's CPU priority: %s", exc)
        return
    logger.info("agent CPU priority lowered", extra={"nice": level})


def run_agent(pool: str, settings: Settings) -> int:
    """Serve ``pool`` until SIGTERM/SIGINT; returns the process exit status.

    Creates the topics if needed, then blocks in :meth:`NodeAgent.run`. A second signal while
    the agent finishes its fragment is ignored (the fragment is finished and published first).
    """
    try:
        agent = NodeAgent(settings, pool)
    except (ExecutionError, ValueError) as exc:
        logger.error("cannot start a node agent for pool %s: %s", pool, exc)
        return EXIT_CONFIG
    ensure_topics(settings, [pool])
    serve_metrics(settings.metrics_port)
    lower_priority(settings.node_nice)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s; finishing the fragment in hand", signal.Signals(signum).name)
        agent.shutdown()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    else:
        logger.warning("not on the main thread: SIGTERM/SIGINT handlers not installed")
    freeze_startup_heap()
    try:
        agent.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
