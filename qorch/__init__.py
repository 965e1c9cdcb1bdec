"""What users hold: the ``qorch`` command, the embedded dev stack behind ``qorch up`` and
``qorch demo``, and the Python SDK (``qorch.client`` and ``qorch.programs``, which import only
``proto``, ``httpx`` and ``grpcio``, and Qiskit for its circuits)."""
