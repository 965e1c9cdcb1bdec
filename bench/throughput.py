"""Throughput: the agent's executor, the whole pipeline, its overhead, and how it scales.

Everything runs in this one invocation, baselines included, and prints Markdown tables with the
ratios (issue 6, goals 1, 2, 3 and 5), training steps against the same circuits run directly,
and last a table of every goal: its target, the figure measured and whether it was met::

    .venv/bin/python bench/throughput.py            # all of it (a few minutes on 2 cores)
    .venv/bin/python bench/throughput.py --quick    # smaller jobs, no 100k-binding job
    .venv/bin/python bench/throughput.py --only fragments  # the fragment size, measured
    .venv/bin/python bench/throughput.py --only training   # optimizer steps of a classifier

Figures only; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from itertools import pairwise
from typing import Any, TypeVar

import numba
from braket.default_simulator import StateVectorSimulation
from braket.devices import LocalSimulator
from braket.ir.openqasm import Program
from common import (
    SHOTS,
    Sampler,
    ansatz,
    bindings,
    counts_job,
    own_peak_rss_bytes,
    rss_bytes,
    run_job,
    running_stack,
    table,
    trivial,
)

from nodes.executors.kernels import ThreadingLayer, select_threading_layer
from nodes.executors.local import LocalExecutor
from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.config import Settings
from qorchestra.examples import example
from qorchestra.training.model import classifier

T = TypeVar("T")

MIB = 1024 * 1024
#: What an agent uses (QORCH_SIMULATOR_THREADS, QORCH_SIMULATOR_THREADING_LAYER).
AGENT_THREADS = Settings().simulator_threads
AGENT_LAYER = Settings().simulator_threading_layer
#: One row per goal measured in this run: goal, target, measured, met.
GOALS: list[list[str]] = []


def goal(name: str, target: str, measured: str, met: bool) -> None:
    """Record a goal's figure for the summary printed at the end."""
    GOALS.append([name, target, measured, "**met**" if met else "**not met**"])


def in_fresh_process(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a new interpreter (spawned, not forked).

    numba fixes its threading layer at a process's first parallel kernel, so each path is
    measured in a process of its own: the baselines as a Braket user runs them (Braket's
    defaults), the agent as an agent runs (its settings).
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
        return pool.submit(function, *args).result()


def per_binding_plain(source: str, values: list[dict[str, float]], layer: ThreadingLayer) -> float:
    """``LocalSimulator('braket_sv').run(program, inputs=...)``, one binding at a time."""
    select_threading_layer(layer)
    device = LocalSimulator("braket_sv")
    device.run(Program(source=source, inputs=values[0]), shots=SHOTS).result()
    started = time.perf_counter()
    for v in values:
        counts = device.run(Program(source=source, inputs=v), shots=SHOTS).result()
        assert counts.measurement_counts
    return (time.perf_counter() - started) / len(values)


def run_batch_seconds(source: str, values: list[dict[str, float]]) -> float:
    """``run_batch(..., max_parallel=2)`` over every binding, counts read back."""
    device = LocalSimulator("braket_sv")
    program = Program(source=source)
    started = time.perf_counter()
    batch = device.run_batch(program, shots=SHOTS, max_parallel=2, inputs=values)
    for result in batch.results():
        assert result.measurement_counts
    return time.perf_counter() - started


def per_binding_kernel(
    source: str, values: list[dict[str, float]], qubits: int, layer: ThreadingLayer
) -> float:
    """Braket's state-vector kernel alone: evolve pre-built operations, draw the samples."""
    select_threading_layer(layer)
    device = LocalSimulator("braket_sv")
    circuits = [
        device._delegate.parse_program(Program(source=source, inputs=v)).circuit for v in values
    ]
    if AGENT_THREADS:
        numba.set_num_threads(min(AGENT_THREADS, numba.get_num_threads()))
    for circuit in circuits[:2]:  # warm: the kernels' first calls load them
        StateVectorSimulation(qubits, SHOTS, 1).evolve(circuit.instructions)
    started = time.perf_counter()
    for circuit in circuits:
        simulation = StateVectorSimulation(qubits, SHOTS, 1)
        simulation.evolve(circuit.instructions)
        simulation.retrieve_samples()
    return (time.perf_counter() - started) / len(values)


def per_binding_agent(source: str, values: list[dict[str, float]]) -> tuple[float, float, str]:
    """The agent's executor on fragments of these bindings: (cold, warm) per binding, layer.

    Cold is a new executor's first fragment (it interprets the program); warm is the next one.
    """
    executor = LocalExecutor("braket_sv", threads=AGENT_THREADS, threading_layer=AGENT_LAYER)
    fragment = pb.Fragment(
        fragment_id="f",
        job_id="j",
        program=source,
        bindings=[pb.Binding(values=v) for v in values],
        shots=SHOTS,
        result_kind=pb.RESULT_KIND_COUNTS,
    )
    times = []
    for _ in range(2):
        started = time.perf_counter()
        executor.execute(fragment)
        times.append((time.perf_counter() - started) / len(values))
    assert executor.compiled_fragments == 2, "the compiled path was not taken"
    return times[0], times[1], executor.threading_layer


def executor_section(quick: bool) -> None:
    rows = []
    braket_layer: ThreadingLayer = "workqueue"  # what importing Braket's simulator selects
    for qubits in (8, 12):
        source, names = ansatz(qubits)
        few = bindings(names, 16 if quick else 32)
        plain = in_fresh_process(per_binding_plain, source, few, braket_layer)
        plain_agent_layer = in_fresh_process(per_binding_plain, source, few, AGENT_LAYER)
        batch = in_fresh_process(run_batch_seconds, source, bindings(names, 64)) / 64
        kernel = in_fresh_process(per_binding_kernel, source, few, qubits, braket_layer)
        kernel_agent_layer = in_fresh_process(per_binding_kernel, source, few, qubits, AGENT_LAYER)
        cold, warm, layer = in_fresh_process(per_binding_agent, source, bindings(names, 64))
        fastest_kernel = min(kernel, kernel_agent_layer)
        goal(
            f"1. executor, {qubits} qubits",
            ">= 5x LocalSimulator.run per binding",
            f"{plain / warm:.1f}x warm, {plain / cold:.1f}x cold "
            f"({plain_agent_layer / warm:.1f}x run on {layer})",
            plain / warm >= 5,
        )
        goal(
            f"1. executor, {qubits} qubits (aim)",
            ">= 50% of the kernel-only rate",
            f"{fastest_kernel / warm:.0%}",
            fastest_kernel / warm >= 0.5,
        )
        rows.append(
            [
                qubits,
                f"{plain * 1e3:.1f}",
                f"{plain_agent_layer * 1e3:.1f}",
                f"{batch * 1e3:.1f}",
                f"{kernel * 1e3:.2f}",
                f"{kernel_agent_layer * 1e3:.2f}",
                f"{cold * 1e3:.2f}",
                f"{warm * 1e3:.2f}",
                f"**{plain / warm:.1f}x** ({plain / cold:.1f}x cold)",
                f"{fastest_kernel / warm:.0%}",
            ]
        )
    print(
        table(
            f"Goal 1 - executor, ms per binding (3-layer ansatz, {SHOTS} shots, counts; "
            f"kernels on {AGENT_THREADS or 'default'} thread(s))",
            [
                "qubits",
                f"LocalSimulator.run ({braket_layer}, Braket's default)",
                f"LocalSimulator.run ({AGENT_LAYER})",
                "run_batch(max_parallel=2)",
                f"kernel only ({braket_layer})",
                f"kernel only ({AGENT_LAYER})",
                "agent (cold fragment of 64)",
                "agent (warm)",
                "agent vs run (Braket's default)",
                "agent rate / faster kernel rate",
            ],
            rows,
        )
    )


def pipeline_section(quick: bool) -> None:
    source, names = ansatz(8)
    values = bindings(names, 512)
    baseline = run_batch_seconds(source, values)
    with running_stack(agents=2, fragment_bindings=64) as (_, client):
        run_job(client, counts_job(source, values[:64]))  # warm-up: agents compile, JIT loads
        seconds, status, _ = run_job(client, counts_job(source, values))
    goal(
        "2. pipeline, 512 bindings, 8 qubits",
        ">= 3x run_batch(max_parallel=2)",
        f"{baseline / seconds:.1f}x",
        baseline / seconds >= 3 and status == "SUCCEEDED",
    )
    print(
        table(
            f"Goal 2 - pipeline: 512 bindings, 8 qubits, {SHOTS} shots, 2 agents",
            ["run_batch(max_parallel=2)", "qorchestra (HTTP submit -> gRPC final event)", "ratio"],
            [
                [
                    f"{baseline:.2f} s",
                    f"{seconds:.2f} s ({status})",
                    f"**{baseline / seconds:.1f}x**",
                ]
            ],
        )
    )


def trivial_job(count: int) -> dict[str, object]:
    source, names = trivial()
    return {
        "name": f"bench: {count} trivial bindings",
        "kind": "circuits",
        "pool": "local-sv",
        "shots": 0,
        "result": {"type": "expectation", "observables": ["Z"]},
        "programs": [{"source": source, "bindings": bindings(names, count)}],
    }


def scale_section(quick: bool) -> None:
    sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    rows = []
    memory_rows = []
    rates: list[float] = []
    orchestrator_peaks: dict[int, int] = {}
    agent_peaks: dict[int, int] = {}
    for agents in (1, 2):
        with running_stack(agents=agents, fragment_bindings=256) as (stack, client):
            run_job(client, trivial_job(256))  # warm-up
            pids = {s.name: s.proc.pid for s in stack.services if s.proc is not None}
            for count in sizes if agents == 2 else sizes[:2]:
                spec = trivial_job(count)
                with Sampler(pids) as sampler:
                    seconds, status, events = run_job(client, spec)
                rows.append(
                    [agents, count, f"{seconds:.2f}", f"**{count / seconds:,.0f}**", status, events]
                )
                if count >= 10_000:  # 1k bindings end in a fraction of a second: start-up noise
                    rates.append(count / seconds)
                if agents == 2:
                    peaks = sampler.peaks
                    orchestrator_peaks[count] = peaks["orchestrator"]
                    agent_peaks[count] = max(peaks["node-1"], peaks["node-2"])
                    after = {name: rss_bytes(pid) for name, pid in pids.items()}
                    memory_rows.append(
                        [
                            count,
                            f"{peaks['api'] / MIB:.0f} ({after['api'] / MIB:.0f} after)",
                            f"{peaks['orchestrator'] / MIB:.0f} "
                            f"({after['orchestrator'] / MIB:.0f} after)",
                            f"{peaks['node-1'] / MIB:.0f}",
                            f"{peaks['node-2'] / MIB:.0f}",
                            f"{own_peak_rss_bytes() / MIB:.0f}",
                        ]
                    )
    print(
        table(
            "Goals 3 and 5 - trivial 1-qubit circuits (exact <Z>), end to end",
            ["agents", "bindings", "seconds", "bindings/s", "status", "events"],
            rows,
        )
    )
    print(
        table(
            "Goal 5 - peak resident memory (MiB) while the job runs (and once it ended), 2 agents",
            ["bindings", "api", "orchestrator", "agent 1", "agent 2", "bench client"],
            memory_rows,
        )
    )
    goal(
        "3. overhead, trivial 1-qubit circuits",
        ">= 1,000 bindings/s end to end",
        f"{min(rates):,.0f} bindings/s (lowest of the 10k+ runs)",
        min(rates) >= 1000,
    )
    smallest, largest = min(orchestrator_peaks), max(orchestrator_peaks)
    for name, by_size in (("orchestrator", orchestrator_peaks), ("agent", agent_peaks)):
        growth = by_size[largest] / by_size[smallest]
        goal(
            f"5. memory, {name}",
            f"flat from {smallest:,} to {largest:,} bindings (<= 1.10x)",
            f"{by_size[smallest] / MIB:.0f} -> {by_size[largest] / MIB:.0f} MiB ({growth:.2f}x)",
            growth <= 1.10,
        )


def training_section(quick: bool) -> None:
    """Optimizer steps of the demo's classifier (4 qubits, 3 re-uploading layers, parameter
    shift: 49 circuits a sample, 16 samples a step) through the stack, against the time the
    same number of circuits takes with ``LocalSimulator.run`` one at a time and ``run_batch``."""
    model = classifier(4, "angle", 3, True)
    observable = "#pragma braket result expectation z(q[0])\n"
    source = model.source + observable
    names = [f"x{q}" for q in range(model.qubits)] + list(model.weight_inputs)
    batch_size, epochs = 16, 1 if quick else 2
    circuits_per_step = batch_size * (1 + 2 * model.weights)
    device = LocalSimulator("braket_sv")
    values = bindings(names, 32 if quick else 64)
    device.run(Program(source=source, inputs=values[0]), shots=0).result()
    started = time.perf_counter()
    for v in values:
        device.run(Program(source=source, inputs=v), shots=0).result()
    plain = (time.perf_counter() - started) / len(values)
    started = time.perf_counter()
    batch = device.run_batch(Program(source=source), shots=0, max_parallel=2, inputs=values)
    for result in batch.results():
        assert result.values
    batched = (time.perf_counter() - started) / len(values)
    # The OpenAPI example is the demo's classifier: the model above, on moons.
    spec = {
        **example("moons-classifier"),
        "name": "bench: moons classifier",
        "training": {
            **example("moons-classifier")["training"],
            "epochs": epochs,
            "batch_size": batch_size,
        },
    }
    with running_stack(agents=2, fragment_bindings=64) as (_, client):
        job = client.submit(spec)
        steps = [e.at.ToMicroseconds() / 1e6 for e in client.watch(job["id"]) if e.type == "step"]
        status = client.job(job["id"])["status"]
    # A step's time: from the event of the step before (its last result counted) to its own;
    # the first step also waits for planning and the agents' first compile, so it is left out.
    step_s = statistics.median(b - a for a, b in pairwise(steps))
    direct = plain * circuits_per_step
    print(
        table(
            f"Training steps - {circuits_per_step} circuits a step (16 samples x 49), exact, "
            "2 agents",
            [
                "steps",
                "LocalSimulator.run, one at a time",
                "run_batch(max_parallel=2)",
                "qorchestra step (median)",
                "vs run",
                "vs run_batch",
            ],
            [
                [
                    f"{len(steps)} ({status})",
                    f"{direct:.2f} s",
                    f"{batched * circuits_per_step:.2f} s",
                    f"{step_s:.2f} s",
                    f"**{direct / step_s:.1f}x**",
                    f"{batched * circuits_per_step / step_s:.1f}x",
                ]
            ],
        )
    )


def fragment_section(quick: bool) -> None:
    """End-to-end time of the same jobs for several fragment sizes (QORCH_FRAGMENT_BINDINGS)."""
    source, names = ansatz(8)
    heavy = counts_job(source, bindings(names, 256 if quick else 512))
    light = trivial_job(2_000 if quick else 10_000)
    rows = []
    for size in (8, 16, 64, 256):
        with running_stack(agents=2, fragment_bindings=size) as (_, client):
            run_job(client, trivial_job(64))  # warm-up
            light_s, _, _ = run_job(client, light)
            heavy_s, _, _ = run_job(client, heavy)
        rows.append([size, f"{light_s:.2f}", f"{heavy_s:.2f}"])
    print(
        table(
            "Fragment size - seconds end to end, 2 agents",
            [
                "bindings per fragment",
                f"{light['name']} (trivial)",
                f"{heavy['name']} (8-qubit ansatz, {SHOTS} shots)",
            ],
            rows,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    parser.add_argument(
        "--only",
        choices=["executor", "pipeline", "scale", "fragments", "training"],
        action="append",
        help="sections",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    sections = args.only or ["executor", "pipeline", "scale", "training"]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}, agent simulator threads: "
        f"{AGENT_THREADS or 'numba default'}, threading layer: {AGENT_LAYER}"
    )
    if "executor" in sections:
        executor_section(args.quick)
    if "pipeline" in sections:
        pipeline_section(args.quick)
    if "scale" in sections:
        scale_section(args.quick)
    if "fragments" in sections:
        fragment_section(args.quick)
    if "training" in sections:
        training_section(args.quick)
    if GOALS:
        print(table("Goals (issue 6)", ["goal", "target", "measured", "verdict"], GOALS))


if __name__ == "__main__":
    main()
