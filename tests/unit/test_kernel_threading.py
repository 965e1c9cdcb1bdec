"""numba's threading layer for Braket's kernels: chosen per process, never changing a result.

numba fixes the layer at a process's first parallel kernel, so each case runs in a fresh
interpreter of its own.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

#: Runs in a fresh interpreter: select a layer, then print the layer in use and the exact
#: 12-qubit state of the benchmark's ansatz (12 qubits runs Braket's parallel kernels).
PROBE = """
import json, sys
import numpy as np
from nodes.executors.kernels import select_threading_layer
from nodes.executors.local import LocalExecutor
from proto.qorch.v1 import fragments_pb2 as pb

asked = sys.argv[1:]
layers = [select_threading_layer(a) for a in asked]
import numba
qubits = 12
lines = ["OPENQASM 3.0;", f"qubit[{qubits}] q;"]
lines += [f"input float p{i};" for i in range(2 * qubits)]
lines += [f"ry(p{i}) q[{i}];" for i in range(qubits)]
lines += [f"cnot q[{i}], q[{i + 1}];" for i in range(qubits - 1)]
lines += [f"rz(p{qubits + i}) q[{i}];" for i in range(qubits)]
values = {f"p{i}": 0.1 + 0.37 * i for i in range(2 * qubits)}
executor = LocalExecutor("braket_sv", threads=1, threading_layer=asked[0])
fragment = pb.Fragment(
    fragment_id="f", job_id="j", program="\\n".join(lines) + "\\n",
    bindings=[pb.Binding(values=values)], result_kind=pb.RESULT_KIND_PROBABILITIES,
)
(result,) = executor.execute(fragment)
assert executor.compiled_fragments == 1
probabilities = dict(result.probabilities.probabilities)
print(json.dumps({
    "layers": layers, "in_use": numba.threading_layer(), "executor": executor.threading_layer,
    "probabilities": {k: v.hex() for k, v in probabilities.items()},
}))
"""


def probe(*layers: str) -> dict[str, object]:
    """Run :data:`PROBE` in a fresh interpreter, asking for ``layers`` in turn."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *layers],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def loadable(module: str) -> bool:
    """Whether numba's pool module for a layer imports (its runtime library is present)."""
    try:
        importlib.import_module(module)
    except Exception:  # ImportError, or OSError from a library that does not load
        return False
    return True


def test_results_are_bit_identical_on_every_layer() -> None:
    omp = probe("omp")
    workqueue = probe("workqueue")

    assert workqueue["in_use"] == "workqueue"
    expected_omp = "omp" if loadable("numba.np.ufunc.omppool") else "workqueue"
    assert omp["in_use"] == omp["executor"] == expected_omp
    probabilities = omp["probabilities"]
    assert isinstance(probabilities, dict) and len(probabilities) > 1000
    assert probabilities == workqueue["probabilities"]


def test_a_missing_layer_falls_back_to_workqueue() -> None:
    if loadable("numba.np.ufunc.tbbpool"):
        pytest.skip("TBB is installed here, so tbb loads; the fallback needs a missing layer")
    answer = probe("tbb")

    assert answer["layers"] == ["workqueue"]
    assert answer["in_use"] == answer["executor"] == "workqueue"


def test_the_first_layer_stays_for_the_process() -> None:
    answer = probe("workqueue", "omp")

    assert answer["layers"] == ["workqueue", "workqueue"]
    assert answer["executor"] == "workqueue"


def test_an_unknown_layer_is_refused() -> None:
    from nodes.executors.kernels import select_threading_layer

    with pytest.raises(ValueError, match="unknown threading layer"):
        select_threading_layer("gpu")  # type: ignore[arg-type]
