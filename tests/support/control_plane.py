"""More than one control plane on one database and broker, for the fault tests: extra API and
orchestrator processes next to a ``Stack``'s own, gRPC watchers of a job, and its stored events.

The extra processes are ``Stack`` services (``stack.services``): they get the stack's
environment, log into its log folder, and are stopped with the rest."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import httpx

from proto.qorch.v1 import jobs_pb2
from qorch.client import QorchClient
from qorch.embedded import free_port
from qorch.stack import Stack
from qorchestra.store import repository as repo
from qorchestra.store.db import make_engine, make_session_factory
from qorchestra.store.events import event_to_proto
from tests.support.faults import metric
from tests.support.waiting import wait_until


@dataclass(frozen=True)
class ApiProcess:
    """Where one API process serves REST and gRPC."""

    name: str
    url: str
    grpc_target: str


def add_control_plane(
    stack: Stack, api: str, orchestrator: str, timeout: float = 120
) -> ApiProcess:
    """Start one more API process (REST and gRPC ports of its own, the stack's admin key) and
    one more orchestrator, both at once, and wait until the API is ready and the orchestrator
    serves its metrics; returns where the API serves."""
    api_port, grpc_port = free_port(), free_port()
    env = {
        "QORCH_ADMIN_KEY": stack.admin_key,
        "QORCH_API_PORT": str(api_port),
        "QORCH_GRPC_PORT": str(grpc_port),
    }
    stack.add_service(api, ["api"], env=env)
    stack.add_service(orchestrator, ["orchestrator"])
    settings = stack.settings.model_copy(update={"api_port": api_port, "grpc_port": grpc_port})
    served = ApiProcess(api, settings.client_api_url(), settings.client_grpc_target())

    def ready() -> bool:
        for name in (api, orchestrator):
            proc = stack.service(name).proc
            assert proc is not None and proc.poll() is None, f"{name} exited"
        try:
            metric(stack, orchestrator, "qorch_results_total")
            return httpx.get(f"{served.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=timeout, interval=0.1, what=f"{api} and {orchestrator} serving")
    return served


def client_of(stack: Stack, api: ApiProcess) -> QorchClient:
    """A client of one API process, with the stack's admin key (the caller closes it)."""
    return QorchClient(api.url, api.grpc_target, api_key=stack.admin_key)


@dataclass
class Watch:
    """One ``WatchJob`` stream from ``from_seq`` 0, read in a thread until the job's final
    event: what it received, in order, and the error that ended it early, if any."""

    client: QorchClient
    job_id: str
    timeout: float = 120.0
    events: list[jobs_pb2.JobEvent] = field(default_factory=list)
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Watch:
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.job_id}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for event in self.client.watch(self.job_id, from_seq=0, timeout=self.timeout):
                self.events.append(event)
        except Exception as error:  # grpc.RpcError or any other: reported by ``join``
            self.error = error

    def join(self, timeout: float) -> list[jobs_pb2.JobEvent]:
        """Wait for the stream to end; returns its events (fails if it ended with an error)."""
        assert self._thread is not None, "not started"
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the stream of {self.job_id} did not end"
        assert self.error is None, f"the stream of {self.job_id} failed: {self.error!r}"
        return self.events


def stored_events(stack: Stack, job_id: str) -> list[jobs_pb2.JobEvent]:
    """The job's events as Postgres holds them, in seq order, in their wire form."""
    engine = make_engine(stack.settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            rows = repo.events_after(session, job_id, 0, limit=100_000)
            return [event_to_proto(row) for row in rows]
    finally:
        engine.dispose()


def counted_results(stack: Stack, orchestrator: str) -> float:
    """Results the orchestrator process has counted (applied) since it started."""
    return metric(stack, orchestrator, "qorch_results_total", outcome="counted")
