"""The PennyLane device ``qorchestra.qubit`` (``pip install 'qorchestra[pennylane]'``):
``qml.device("qorchestra.qubit", wires=2)`` runs circuits as qorchestra circuits jobs, one job
per batch. See docs/pennylane.md.

``QorchDevice`` is imported on first use, so the pure modules (``qasm``, ``plan``) load without
the SDK's client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qorch.pennylane.device import QorchDevice

__all__ = ["QorchDevice"]


def __getattr__(name: str) -> Any:
    if name == "QorchDevice":
        from qorch.pennylane.device import QorchDevice

        return QorchDevice
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
