"""Circuits and their values for tests: a cuttable ladder, and expectations computed directly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from braket.devices import LocalSimulator
from braket.ir.openqasm import Program

from nodes.executors.local import LocalExecutor
from proto.qorch.v1 import fragments_pb2 as pb


def expectations(
    executor: LocalExecutor,
    source: str,
    qubits: int,
    observables: Sequence[str],
    bindings: Sequence[Mapping[str, float]],
    shots: int = 0,
) -> list[list[float]]:
    """``[binding][observable]`` from one expectation fragment run by the node's executor."""
    fragment = pb.Fragment(
        fragment_id="f",
        job_id="j",
        attempt=1,
        pool="local-sv",
        program=source,
        bindings=[pb.Binding(values=b) for b in bindings] or [pb.Binding()],
        shots=shots,
        result_kind=pb.RESULT_KIND_EXPECTATION,
        observables=list(observables),
        qubits=qubits,
    )
    return [list(r.expectations.values) for r in executor.execute(fragment)]


def ladder(n: int) -> str:
    """An ``n``-qubit program of one input ``t``: rotations, a CNOT ladder, rotations."""
    lines = ["OPENQASM 3.0;", "input float t;", f"qubit[{n}] q;"]
    lines += [f"ry(t * {i + 1}) q[{i}];" for i in range(n)]
    lines += [f"cnot q[{i}], q[{i + 1}];" for i in range(n - 1)]
    lines += [f"rx(t) q[{i}];" for i in range(n)]
    return "\n".join(lines) + "\n"


#: Braket's state-vector simulator, run directly (not through a node's executor).
SIM = LocalSimulator("braket_sv")


def direct_expectations(
    source: str, binding: dict[str, float], observables: list[str]
) -> list[float]:
    """What LocalSimulator gives for the same program, run directly."""
    pragmas = []
    for obs in observables:
        factors = [f"{p.lower()}(q[{i}])" for i, p in enumerate(obs) if p != "I"]
        pragmas.append("#pragma braket result expectation " + " @ ".join(factors))
    program = Program(source=source + "\n".join(pragmas) + "\n", inputs=binding)
    return [float(v) for v in SIM.run(program, shots=0).result().values]


def direct_probabilities(source: str, binding: dict[str, float]) -> list[float]:
    """What LocalSimulator gives as the program's probabilities, run directly."""
    program = Program(source=source + "#pragma braket result probability\n", inputs=binding)
    return [float(p) for p in SIM.run(program, shots=0).result().values[0]]
