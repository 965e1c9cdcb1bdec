"""Run one node agent as a process: ``qorch node --pool local-sv`` or ``python -m nodes``."""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

from nodes.agent import NodeAgent
from nodes.executors.base import ExecutionError
from qorchestra.config import Settings
from qorchestra.heap import freeze_startup_heap
from qorchestra.kafka import ensure_topics
from qorchestra.metrics import serve_metrics

logger = logging.getLogger(__name__)

#: Exit status when the agent cannot start: a pool that is neither local, ``aws-*`` nor an
#: ``emu-*`` pool with a device profile. (An ``aws-*`` pool this node lacks the configuration for
#: starts, and fails its fragments at once.)
EXIT_CONFIG = 2


def lower_priority(nice: int, idle: bool) -> None:
    """Lower the CPU priority of the calling thread and of the threads it starts later, so
    that simulations yield to the control plane on a shared machine.

    ``nice`` is a Unix nice increment (0 keeps it). ``idle`` puts the thread under Linux's
    SCHED_IDLE policy: it runs only on CPU nothing else wants, and a thread of the API,
    orchestrator, broker or Postgres that wakes up preempts it at once; under a nice value alone
    the woken thread waits for the simulation's time slice to end, on each hop of an event.
    The agent calls this before it starts its Kafka clients, so their I/O threads (fragments
    in, results out) yield too: that traffic competed with the event path as well. Threads
    that exist already (the metrics server) keep their priority. A platform without these
    calls keeps its priority.
    """
    if nice > 0 and hasattr(os, "nice"):
        try:
            level = os.nice(nice)
        except OSError as exc:
            logger.warning("could not lower the agent's CPU priority: %s", exc)
        else:
            logger.info("agent CPU priority lowered", extra={"nice": level})
    if idle and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError as exc:
            logger.warning("could not move the agent to the idle scheduling policy: %s", exc)
        else:
            logger.info("agent runs under SCHED_IDLE")


#: The core topics an agent writes to (it reads only its pool's fragments topic).
AGENT_TOPICS = ("results", "heartbeats", "fragments.dlq")


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
    ensure_topics(settings, [pool], core=AGENT_TOPICS)
    serve_metrics(settings.metrics_port)
    lower_priority(settings.node_nice, settings.node_idle_priority)

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
