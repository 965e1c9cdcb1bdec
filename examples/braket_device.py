"""Amazon Braket circuits on qorchestra through a Braket ``Device`` (docs/braket.md): code
written for ``LocalSimulator`` runs unchanged on a pool.

    qorch up                                   # in another shell; it prints QORCH_API_KEY
    export QORCH_API_KEY=...
    python examples/braket_device.py
"""

from __future__ import annotations

import numpy as np
from braket.circuits import Circuit, FreeParameter, Observable

from qorch.braket import QorchDevice

theta = FreeParameter("theta")
circuit = Circuit().ry(0, theta).cnot(0, 1)
exact = circuit.copy().expectation(Observable.Z() @ Observable.Z(), [0, 1]).probability([1])

with QorchDevice(pool="local-sv") as device:  # QORCH_API_URL, QORCH_API_KEY, QORCH_GRPC_TARGET
    # Exact result types (shots=0), as LocalSimulator computes them: the state is
    # cos(theta/2)|00> + sin(theta/2)|11>, so <ZZ> = 1 and qubit 1 is 1 with sin^2(theta/2).
    result = device.run(exact, shots=0, inputs={"theta": 0.5}).result()
    print("values", result.values)
    assert np.isclose(result.values[0], 1.0, atol=1e-10)
    assert np.allclose(result.values[1], [np.cos(0.25) ** 2, np.sin(0.25) ** 2], atol=1e-10)

    # Shots: measurement counts, a batch of tasks submitted at once.
    batch = device.run_batch([circuit, circuit], shots=500, inputs=[{"theta": 0.0}, {"theta": 3.0}])
    for task_result in batch.results():
        print("counts", dict(task_result.measurement_counts))
        assert set(task_result.measurement_counts) <= {"00", "11"}
    assert batch.results()[0].measurement_counts == {"00": 500}
print("OK")
