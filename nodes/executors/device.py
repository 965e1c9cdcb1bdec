"""What an executor that serves a real or emulated device tells its agent about the device:
status, queue depth and execution windows, for the agent's heartbeats (docs/qpu.md, "Queue-aware
pools")."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from proto.qorch.v1 import nodes_pb2


@runtime_checkable
class DeviceObserver(Protocol):
    """An executor that can say how its device stands (the Braket devices, emulated or not)."""

    def device_state(self) -> nodes_pb2.DeviceState:
        """The device's status, queue depth and execution windows now. May ask the device's
        service (and take as long as that takes): the agent calls it from a thread of its
        own, never from the heartbeat or fragment threads. Raises when it cannot tell."""
        ...
