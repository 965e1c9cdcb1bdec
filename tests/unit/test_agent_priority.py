"""An agent lowers the priority of its own thread and of every thread it starts later.

Each case runs in a fresh interpreter: an unprivileged process cannot raise its priority
again, and the test process must keep its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")

PROBE = """
import json, os, sys, threading
from nodes.main import lower_priority

lowered = threading.Event()
before = {}
def metrics_like():  # a thread that exists before the agent lowers its priority
    lowered.wait()
    before["policy"] = os.sched_getscheduler(0)
earlier = threading.Thread(target=metrics_like)
earlier.start()

lower_priority(int(sys.argv[1]), sys.argv[2] == "idle")
lowered.set()
earlier.join()
later = {}
worker = threading.Thread(target=lambda: later.update(policy=os.sched_getscheduler(0)))
worker.start()
worker.join()
print(json.dumps({
    "main": os.sched_getscheduler(0),
    "nice": os.nice(0),
    "later": later["policy"],
    "earlier": before["policy"],
    "idle": os.SCHED_IDLE,
    "other": os.SCHED_OTHER,
}))
"""


def probe(nice: int, policy: str) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(nice), policy],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_simulations_run_under_sched_idle_and_threads_started_later_inherit_it() -> None:
    seen = probe(3, "idle")
    assert seen["main"] == seen["idle"]
    assert seen["later"] == seen["idle"]  # the Kafka clients' threads, the heartbeats
    assert seen["earlier"] == seen["other"]  # the metrics server keeps its priority


def test_without_the_idle_policy_only_the_nice_value_changes() -> None:
    seen = probe(3, "normal")
    assert seen["main"] == seen["other"]
    assert seen["nice"] == os.nice(0) + 3
