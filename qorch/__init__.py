"""What users hold: the ``qorch`` command, the embedded dev stack behind ``qorch up`` and
``qorch demo``, and the Python client (``qorch.client``, which imports only ``proto``,
``httpx`` and ``grpcio``)."""
