"""The shared library under the three services: settings, Kafka, logging, metrics, the
domain (job kinds, validation, OpenQASM, cutting and training maths, costs, lifecycle) and
the store. It imports only ``proto`` below it, never ``api``, ``orchestrator``, ``nodes`` or
``qorch``."""
