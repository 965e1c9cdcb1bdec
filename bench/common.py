"""What the benchmarks share: circuits, bindings, the embedded stack, memory readings."""

from __future__ import annotations

import math
import os
import random
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qorch.client import QorchClient
from qorch.stack import Stack, StackOptions
from qorchestra.config import Settings

SHOTS = 1000


def ansatz(qubits: int, layers: int = 3) -> tuple[str, list[str]]:
    """Hardware-efficient ansatz: RY+RZ on every qubit, then a CNOT ladder, per layer."""
    names = [f"p{i}" for i in range(2 * qubits * layers)]
    lines = ["OPENQASM 3.0;", *(f"input float {n};" for n in names), f"qubit[{qubits}] q;"]
    k = 0
    for _ in range(layers):
        for i in range(qubits):
            lines += [f"ry({names[k]}) q[{i}];", f"rz({names[k + 1]}) q[{i}];"]
            k += 2
        lines += [f"cnot q[{i}], q[{i + 1}];" for i in range(qubits - 1)]
    return "\n".join(lines) + "\n", names


def trivial() -> tuple[str, list[str]]:
    """The smallest useful circuit: one parametrised rotation on one qubit."""
    return "OPENQASM 3.0;\ninput float a;\nqubit q;\nrx(a) q;\n", ["a"]


def bindings(names: list[str], count: int, seed: int = 1) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [{n: rng.uniform(-math.pi, math.pi) for n in names} for _ in range(count)]


def counts_job(source: str, values: list[dict[str, float]], shots: int = SHOTS) -> dict[str, Any]:
    """A circuits job of one program, measured with ``shots`` shots per binding."""
    return {
        "name": f"bench: {len(values)} bindings",
        "kind": "circuits",
        "pool": "local-sv",
        "shots": shots,
        "result": {"type": "counts"},
        "programs": [{"source": source, "bindings": values}],
    }


@dataclass
class Sampler:
    """Samples the resident memory of some processes in a thread; keeps each one's peak."""

    pids: dict[str, int]
    interval_s: float = 0.1
    peaks: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                self.peaks[name] = max(self.peaks.get(name, 0), rss_bytes(pid))
            self._stop.wait(self.interval_s)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (FileNotFoundError, ProcessLookupError):
        return 0


def own_peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextmanager
def running_stack(agents: int, **settings: Any) -> Iterator[tuple[Stack, QorchClient]]:
    """The embedded stack (own Postgres and broker) with ``agents`` local-sv agents."""
    base: dict[str, Any] = {"topic_prefix": f"bench{os.getpid()}."}
    base.update(settings)
    logs = Path(tempfile.mkdtemp(prefix="qorch-bench-"))
    options = StackOptions(pools=["local-sv"] * agents, log_dir=logs, free_ports=True)
    with (
        Stack(Settings(**base), options) as stack,
        QorchClient(
            stack.api_url, stack.grpc_target, timeout=300, api_key=stack.admin_key
        ) as client,
    ):
        yield stack, client


def run_job(client: QorchClient, spec: dict[str, Any]) -> tuple[float, str, int]:
    """Submit over HTTP and follow over gRPC to the final event: (seconds, status, events)."""
    started = time.perf_counter()
    job = client.submit(spec)
    events = list(client.watch(job["id"]))
    elapsed = time.perf_counter() - started
    final = client.job(job["id"])["status"]
    return elapsed, final, len(events)


def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table, ready for docs/performance.md."""
    out = [f"\n### {title}", "", "| " + " | ".join(header) + " |"]
    out.append("|" + "---|" * len(header))
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)
