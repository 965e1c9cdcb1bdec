"""Cut plans against qiskit-addon-cutting's ``find_cuts`` on the same circuits.

    .venv/bin/pip install -e '.[bench]'     # qiskit-addon-cutting, for this bench only
    .venv/bin/python bench/cutting.py [--count 12] [--seed 111]

For each circuit of the suite (``tests/support/cut_circuits.py``: the two-halves circuit of
issue 19, then random block circuits of 7-14 qubits cut for nodes of 2-6 qubits) it plans
with both cutters for the same qubits per subcircuit and prints the sampling overheads, the
number of subexperiments and the planning time of each. qorchestra plans as a job does: the
search bounded by the default work budget (``QORCH_CUT_SEARCH_TIMEOUT_S`` = 2 s); its
subexperiments are the programs it runs per binding. qiskit-addon-cutting's are those
``generate_cutting_experiments`` returns for its plan (exact weights, ``num_samples=inf``),
for the one observable ``Z...Z``. Not a test: times depend on the machine.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qorchestra.config import Settings
from qorchestra.cutting import CuttingError, plan_cuts
from qorchestra.cutting.plan import search_budget
from tests.support.cut_circuits import QISKIT_NAMES, CutCase, suite

#: qiskit-addon-cutting's subexperiments are generated (and counted) up to this many cuts: a
#: plan of 7 CNOT cuts already has 6^7 joint terms.
MAX_GENERATED_CUTS = 6


def ours(case: CutCase, budget: int) -> tuple[float, int, str, float]:
    """qorchestra's overhead, subexperiments, cuts and planning seconds (inf when no plan)."""
    start = time.perf_counter()
    try:
        plan = plan_cuts(case.qasm(), case.max_width, max_work=budget)
    except CuttingError:
        return math.inf, 0, "none", time.perf_counter() - start
    seconds = time.perf_counter() - start
    cuts = f"{plan.gate_cuts}g+{plan.wire_cuts}w"
    return plan.sampling_overhead, sum(plan.programs_per_subcircuit), cuts, seconds


def qiskit_circuit(case: CutCase) -> Any:
    """The same circuit as a Qiskit ``QuantumCircuit``."""
    from qiskit import QuantumCircuit

    circuit = QuantumCircuit(case.qubits)
    for gate in case.gates:
        method = getattr(circuit, QISKIT_NAMES[gate.name])
        args = [] if gate.angle is None else [gate.angle]
        method(*args, *gate.qubits)
    return circuit


def theirs(case: CutCase, seed: int) -> tuple[float, int, str, float]:
    """qiskit-addon-cutting's overhead, subexperiments, cuts and planning seconds."""
    import numpy as np
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_addon_cutting import (
        cut_wires,
        expand_observables,
        generate_cutting_experiments,
        partition_problem,
    )
    from qiskit_addon_cutting.automated_cut_finding import (
        DeviceConstraints,
        OptimizationParameters,
        find_cuts,
    )

    circuit = qiskit_circuit(case)
    start = time.perf_counter()
    cut, metadata = find_cuts(
        circuit, OptimizationParameters(seed=seed), DeviceConstraints(case.max_width)
    )
    seconds = time.perf_counter() - start
    kinds = [kind for kind, _ in metadata["cuts"]]
    cuts = f"{kinds.count('Gate Cut')}g+{kinds.count('Wire Cut')}w"
    if len(kinds) > MAX_GENERATED_CUTS:
        return float(metadata["sampling_overhead"]), -1, cuts, seconds
    widened = cut_wires(cut)
    observables = expand_observables(SparsePauliOp(["Z" * case.qubits]).paulis, circuit, widened)
    problem = partition_problem(circuit=widened, observables=observables)
    experiments, _ = generate_cutting_experiments(
        circuits=problem.subcircuits,
        observables=problem.subobservables,
        num_samples=np.inf,
    )
    count = sum(len(v) for v in experiments.values())
    return float(metadata["sampling_overhead"]), count, cuts, seconds


def _count(count: int) -> str:
    return "not generated" if count < 0 else str(count)


def main() -> None:
    """Plan the suite with both cutters and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=12, help="random circuits after the first")
    parser.add_argument("--seed", type=int, default=111, help="find_cuts's seed")
    args = parser.parse_args()
    budget = search_budget(Settings().cut_search_timeout_s)
    header = (
        "| circuit | qubits | per node | qiskit-addon-cutting: cuts, overhead, subexp., s "
        "| qorchestra: cuts, overhead, subexp., s | ours <= theirs |"
    )
    print(header)
    print("|---|---|---|---|---|---|")
    worse = 0
    for case in suite(args.count):
        q_overhead, q_count, q_cuts, q_time = theirs(case, args.seed)
        o_overhead, o_count, o_cuts, o_time = ours(case, budget)
        ok = o_overhead <= q_overhead * (1 + 1e-9)
        worse += not ok
        print(
            f"| {case.name} | {case.qubits} | {case.max_width} "
            f"| {q_cuts}, {q_overhead:.4g}, {_count(q_count)}, {q_time:.2f} "
            f"| {o_cuts}, {o_overhead:.4g}, {o_count}, {o_time:.2f} | {'yes' if ok else 'NO'} |"
        )
    print(f"\n{worse} circuit(s) where qorchestra's overhead is above qiskit-addon-cutting's")


if __name__ == "__main__":
    main()
