"""Emulated devices (pools ``emu-<profile>``): Braket's ``LocalEmulator`` built from a device
profile (:mod:`qorchestra.devices`), behind an emulated queue.

The emulator is the Braket SDK's own: it checks a program against the device as the device's
properties describe it (native gates, connectivity, qubit count, result types) and runs it on
the density-matrix simulator under a noise model made from the device's calibration data
(depolarizing noise after each gate from its gate fidelities, bit flips before readout from its
readout fidelities). Nothing is compiled: a program runs gate for gate as written, as in a
verbatim box on the device, and a program without a verbatim box is run as if its whole body
were one. A program that is not native to the device fails at once, not retryable, with the
emulator's own message (e.g. ``Gate H is not a native gate for this device.``); the API refuses
such a program at submission with the same check, so this one catches the fragments that
did not come through it (and result types, which the API does not judge).

Each task (one program run for one binding, as a Braket device bills it) first waits in the
emulated queue: a delay drawn from the seeded distribution of the pool, uniform between the
profile's ``queue_s`` bounds (``QORCH_EMULATOR_QUEUE_S`` overrides them). The queue the agent
reports in its heartbeats (``device_state``) is the tasks of the fragment in hand that have not
run yet; the device is always ONLINE.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import UTC, datetime

from braket.circuits import Circuit
from braket.devices import LocalSimulator
from braket.tasks import GateModelQuantumTaskResult

from nodes.executors.base import ExecutionError, Used
from nodes.executors.local import prepared_work, simulator_failure
from proto.qorch.v1 import fragments_pb2 as pb
from proto.qorch.v1 import nodes_pb2
from qorchestra.device_status import device_message
from qorchestra.devices import DeviceProfile
from qorchestra.devices.emulation import (
    NotNative,
    build_emulator,
    checked_circuit,
    run_emulated,
)

logger = logging.getLogger(__name__)

#: Programs an executor keeps parsed and checked (a training job sends the same ones again).
CIRCUIT_CACHE_SIZE = 32
#: Queue delays an executor remembers (:attr:`EmulatedExecutor.queue_waits`).
QUEUE_WAITS_KEPT = 4096


class EmulatedExecutor:
    """Runs fragments on Braket's ``LocalEmulator`` of one device profile, in this process.

    ``queue_s`` bounds the emulated queue delay of each task (default: the profile's), drawn
    with a ``random.Random(seed)`` that lives as long as the executor: the same seed gives the
    same delays, task by task. ``sleep`` waits them out. :attr:`queue_waits` keeps the last
    :data:`QUEUE_WAITS_KEPT` delays drawn, in order.
    """

    def __init__(
        self,
        profile: DeviceProfile,
        *,
        queue_s: tuple[float, float] | None = None,
        seed: int = 0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        shortest, longest = queue_s if queue_s is not None else profile.queue_s
        if not 0 <= shortest <= longest:
            raise ValueError(f"queue_s must be 0 <= shortest <= longest, not {queue_s}")
        self.profile = profile
        self._queue_s = (shortest, longest)
        self._random = random.Random(seed)
        self._sleep = sleep
        self._emulator = build_emulator(profile)
        self._backend = LocalSimulator("braket_dm")
        self._circuits: OrderedDict[str, Circuit] = OrderedDict()
        self.queue_waits: deque[float] = deque(maxlen=QUEUE_WAITS_KEPT)
        #: What the last fragment that succeeded used (``Metered``): a task per run.
        self.last_usage: Used | None = None
        self._queued_lock = threading.Lock()  # the heartbeats read what execute counts down
        self._queued = 0  # tasks of the fragment in hand that have not run yet
        logger.info(
            "emulating %s (%d qubits) from %s; queue %g-%g s per task",
            profile.device,
            profile.qubits,
            profile.path or profile.name,
            shortest,
            longest,
            extra={"pool": profile.pool},
        )

    @property
    def name(self) -> str:
        """``LocalEmulator(<profile>)``, as heartbeats show the backend."""
        return f"LocalEmulator({self.profile.name})"

    def execute(self, fragment: pb.Fragment) -> list[pb.BindingResult]:
        """Check the fragment's programs against the device, then run every binding: one
        result per binding, in order."""
        self.last_usage = None
        prepared, inputs = prepared_work(fragment)
        if not prepared.runs:  # nothing to run: every observable is the identity
            self.last_usage = Used(0, 0)
            return [prepared.binding_result([]) for _ in inputs]
        circuits = [self._checked_circuit(run.source) for run in prepared.runs]
        results: list[GateModelQuantumTaskResult] = []
        self._set_queued(len(inputs) * len(circuits))
        try:
            for index, values in enumerate(inputs):
                for circuit in circuits:
                    self._wait_in_queue()
                    try:
                        results.append(
                            run_emulated(
                                self._emulator, self._backend, circuit, fragment.shots, values
                            )
                        )
                    except Exception as exc:
                        raise simulator_failure(exc, index) from exc
                    self._set_queued(len(inputs) * len(circuits) - len(results))
        finally:
            self._set_queued(0)
        outcome = prepared.binding_results(results)
        self.last_usage = Used(tasks=len(results), shots=len(results) * fragment.shots)
        return outcome

    def device_state(self) -> nodes_pb2.DeviceState:
        """ONLINE, with the emulated queue: the tasks of the fragment in hand not run yet."""
        with self._queued_lock:
            queued = self._queued
        return device_message("ONLINE", queue=(queued, 0, 0), observed_at=datetime.now(UTC))

    def _set_queued(self, tasks: int) -> None:
        with self._queued_lock:
            self._queued = tasks

    def close(self) -> None:
        """Nothing to release: the emulator holds no outside resources."""

    def _checked_circuit(self, source: str) -> Circuit:
        """``source`` as a native circuit, checked by the emulator's validation passes (cached
        by source); a program the device cannot run fails the fragment, not retryable. The API
        refuses such a program at submission with the same check (``checked_circuit``); this
        one stands for fragments that did not come through it."""
        circuit = self._circuits.get(source)
        if circuit is not None:
            self._circuits.move_to_end(source)
            return circuit
        try:
            circuit = checked_circuit(self._emulator, source, self.profile.gates)
        except NotNative as exc:
            raise ExecutionError(
                self.profile.refusal(str(exc)), retryable=False, error_type="ProgramError"
            ) from exc
        self._circuits[source] = circuit
        if len(self._circuits) > CIRCUIT_CACHE_SIZE:
            self._circuits.popitem(last=False)
        return circuit

    def _wait_in_queue(self) -> None:
        """Wait the emulated queue delay of one task."""
        delay = self._random.uniform(*self._queue_s)
        self.queue_waits.append(delay)
        self._sleep(delay)
