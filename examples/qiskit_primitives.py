"""Qiskit's V2 primitives on qorchestra (docs/qiskit.md): a parametrised Bell circuit sampled
and estimated, each call one circuits job, checked against Qiskit's own reference primitives.

    qorch up                                   # in another shell; it prints QORCH_API_KEY
    export QORCH_API_KEY=...
    python examples/qiskit_primitives.py
"""

from __future__ import annotations

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.primitives import StatevectorEstimator
from qiskit.quantum_info import SparsePauliOp

from qorch.qiskit import Estimator, Sampler

theta = Parameter("theta")
bell = QuantumCircuit(2)
bell.ry(theta, 0)
bell.cx(0, 1)
angles = np.linspace(0, np.pi, 5).reshape(5, 1)  # five parameter sets: a PUB of shape (5,)

# Expectation values, exact (precision 0): shape (2, 5), observables broadcast over angles.
observables = [["ZZ"], [SparsePauliOp(["XX", "IZ"], [0.5, 0.5])]]
estimator = Estimator(pool="local-sv")  # QORCH_API_URL, QORCH_API_KEY, QORCH_GRPC_TARGET
evs = estimator.run([(bell, observables, angles)]).result()[0].data.evs
reference = StatevectorEstimator().run([(bell, observables, angles)]).result()[0].data.evs
print("evs", np.round(evs, 4).tolist())
assert np.allclose(evs, reference, atol=1e-10)

# Samples: 1000 shots per angle, per classical register ("meas" from measure_all).
measured = bell.measure_all(inplace=False)
sampler = Sampler(pool="local-sv", seed=1)
data = sampler.run([(measured, angles)], shots=1000).result()[0].data
print("counts at theta=pi/2", data.meas.get_counts(2))  # about half "00", half "11"
assert set(data.meas.get_counts(2)) <= {"00", "11"} and data.meas.shape == (5,)

estimator.close()
sampler.close()
print("OK")
