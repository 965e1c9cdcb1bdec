"""What users hold: the ``qorch`` command, the embedded dev stack behind ``qorch up`` and
``qorch demo``, and the Python SDK (``qorch.client`` and ``qorch.programs``, which import only
``proto``, ``httpx`` and ``grpcio``, and Qiskit for its circuits) with its adapters: the PennyLane
device (``qorch.pennylane``), Qiskit's V2 primitives (``qorch.qiskit``) and a Braket ``Device``
(``qorch.braket``)."""
