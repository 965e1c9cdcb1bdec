"""Throughput: the agent's executor, the whole pipeline, its overhead, and how it scales.

Everything runs in this one invocation, baselines included, and prints Markdown tables with the
ratios (issue 6, goals 1, 2, 3 and 5)::

    .venv/bin/python bench/throughput.py            # all of it (a few minutes on 2 cores)
    .venv/bin/python bench/throughput.py --quick    # smaller jobs, no 100k-binding job
    .venv/bin/python bench/throughput.py --only fragments  # the fragment size, measured

Figures only; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

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

from nodes.executors.local import LocalExecutor
from proto.qorch.v1 import fragments_pb2 as pb
from qorch.config import Settings

MIB = 1024 * 1024
#: What an agent uses (QORCH_SIMULATOR_THREADS); the kernel-only figure uses it too.
AGENT_THREADS = Settings().simulator_threads


def per_binding_plain(source: str, values: list[dict[str, float]]) -> float:
    """``LocalSimulator('braket_sv').run(program, inputs=...)``, one binding at a time."""
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


def per_binding_kernel(source: str, values: list[dict[str, float]], qubits: int) -> float:
    """Braket's state-vector kernel alone: evolve pre-built operations, draw the samples."""
    device = LocalSimulator("braket_sv")
    circuits = [
        device._delegate.parse_program(Program(source=source, inputs=v)).circuit for v in values
    ]
    threads = numba.get_num_threads()
    numba.set_num_threads(AGENT_THREADS or threads)
    started = time.perf_counter()
    for circuit in circuits:
        simulation = StateVectorSimulation(qubits, SHOTS, 1)
        simulation.evolve(circuit.instructions)
        simulation.retrieve_samples()
    elapsed = time.perf_counter() - started
    numba.set_num_threads(threads)
    return elapsed / len(values)


def per_binding_agent(source: str, values: list[dict[str, float]]) -> tuple[float, float]:
    """The agent's executor on fragments of these bindings: (cold, warm) per binding.

    Cold is a new executor's first fragment (it interprets the program); warm is the next one.
    """
    executor = LocalExecutor("braket_sv", threads=AGENT_THREADS)
    threads = numba.get_num_threads()
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
    numba.set_num_threads(threads)
    assert executor.compiled_fragments == 2, "the compiled path was not taken"
    return times[0], times[1]


def executor_section(quick: bool) -> None:
    rows = []
    for qubits in (8, 12):
        source, names = ansatz(qubits)
        plain = per_binding_plain(source, bindings(names, 16 if quick else 32))
        batch = run_batch_seconds(source, bindings(names, 64)) / 64
        kernel = per_binding_kernel(source, bindings(names, 32), qubits)
        cold, warm = per_binding_agent(source, bindings(names, 64))
        rows.append(
            [
                qubits,
                f"{plain * 1e3:.1f}",
                f"{batch * 1e3:.1f}",
                f"{kernel * 1e3:.2f}",
                f"{cold * 1e3:.2f}",
                f"{warm * 1e3:.2f}",
                f"**{plain / warm:.1f}x** ({plain / cold:.1f}x cold)",
                f"{kernel / warm:.0%}",
            ]
        )
    print(
        table(
            f"Goal 1 - executor, ms per binding (3-layer ansatz, {SHOTS} shots, counts)",
            [
                "qubits",
                "LocalSimulator.run",
                "run_batch(max_parallel=2)",
                f"kernel only ({AGENT_THREADS or 'default'} thread)",
                "agent (cold fragment of 64)",
                "agent (warm)",
                "agent vs run",
                "agent rate / kernel rate",
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
                if agents == 2:
                    peaks = sampler.peaks
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
        choices=["executor", "pipeline", "scale", "fragments"],
        action="append",
        help="sections",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    sections = args.only or ["executor", "pipeline", "scale"]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}, agent simulator threads: {AGENT_THREADS or 'numba default'}"
    )
    if "executor" in sections:
        executor_section(args.quick)
    if "pipeline" in sections:
        pipeline_section(args.quick)
    if "scale" in sections:
        scale_section(args.quick)
    if "fragments" in sections:
        fragment_section(args.quick)


if __name__ == "__main__":
    main()
