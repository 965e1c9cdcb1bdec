"""A node agent in tests: running it in a thread, fragments for it, and reading its topics."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, Protocol, TypeVar

from google.protobuf.message import Message as ProtoMessage

from proto.qorch.v1 import fragments_pb2 as pb
from proto.qorch.v1 import signed_pb2
from qorchestra.config import Settings
from qorchestra.kafka import Consumer
from tests.support.waiting import wait_until

#: The pool the agent tests serve.
POOL = "local-sv"
#: Three qubits, one input ``theta``: what ``fragment`` runs.
PROGRAM = """OPENQASM 3.0;
input float theta;
qubit[3] q;
ry(theta) q[0];
cnot q[0], q[1];
rx(theta) q[2];
"""


#: Group joins take about 1 s with the test session timeout; leave room for a slow machine.
DEADLINE_S = 20.0


M = TypeVar("M", bound=ProtoMessage)


class TopicReader(Generic[M]):
    """Reads one topic from the beginning on assigned partitions (no group join delay); with
    ``signed``, each message is the body of a ``Signed`` envelope (signature not checked)."""

    def __init__(
        self, settings: Settings, topic: str, message_type: type[M], *, signed: bool = False
    ) -> None:
        self._consumer = Consumer(settings, [topic], group=None)
        self._type = message_type
        self._signed = signed
        self.items: list[tuple[str, M]] = []

    def read(self) -> list[tuple[str, M]]:
        """Everything that has arrived so far, as (key, message)."""
        while (msg := self._consumer.poll(0.05)) is not None:
            key = (msg.key() or b"").decode()
            value = msg.value() or b""
            if self._signed:
                value = signed_pb2.Signed.FromString(value).body
            self.items.append((key, self._type.FromString(value)))
        return self.items

    def wait_for(
        self,
        condition: Callable[[list[tuple[str, M]]], bool],
        what: str,
        timeout: float = DEADLINE_S,
    ) -> list[tuple[str, M]]:
        """Read until ``condition`` holds for everything read; returns it (else fails)."""
        return wait_until(
            lambda: self.read() if condition(self.read()) else None, timeout, what=what
        )

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()


class Service(Protocol):
    """A node agent or an orchestrator: ``run()`` until ``shutdown()``."""

    def run(self) -> None: ...

    def shutdown(self) -> None: ...


@contextmanager
def running(service: Service) -> Iterator[threading.Thread]:
    """Run the service (an agent, an orchestrator) in a thread; on exit, shut it down and
    check that run() returned."""
    name = type(service).__name__
    thread = threading.Thread(target=service.run, name=name, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        service.shutdown()
        thread.join(DEADLINE_S)
        assert not thread.is_alive(), f"{name}.run() did not return after shutdown()"


def fragment(
    fragment_id: str,
    job_id: str,
    kind: int,
    *,
    shots: int = 0,
    observables: list[str] | None = None,
    thetas: tuple[float, ...] = (0.1, 0.8, 2.5),
) -> pb.Fragment:
    """A first-attempt fragment of ``PROGRAM`` on ``POOL``, one binding per theta."""
    return pb.Fragment(
        fragment_id=fragment_id,
        job_id=job_id,
        attempt=1,
        pool=POOL,
        program=PROGRAM,
        bindings=[pb.Binding(values={"theta": t}) for t in thetas],
        shots=shots,
        result_kind=kind,  # type: ignore[arg-type]
        observables=observables or [],
        qubits=3,
    )
