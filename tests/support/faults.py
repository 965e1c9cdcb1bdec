"""Helpers of the fault tests: their settings, waiting on a job through the API, signalling
services, reading topics and metrics, and what a fault-free run gives (circuits and training)."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from braket.devices import LocalSimulator
from braket.ir.openqasm import Program
from google.protobuf.message import Message as ProtoMessage
from sqlalchemy import func, select

from nodes.encoding import apply_encoding
from nodes.executors import adjoint
from nodes.executors.factory import executor_for_pool
from proto.qorch.v1 import fragments_pb2 as pb
from proto.qorch.v1 import signed_pb2
from qorch.client import QorchClient
from qorch.samples import demo_job
from qorch.stack import Stack
from qorchestra.aggregation import binding_values
from qorchestra.config import Settings
from qorchestra.kafka import Consumer, Producer
from qorchestra.signing import NodeSigner
from qorchestra.store.db import make_engine
from qorchestra.store.models import Fragment, OutboxMessage
from qorchestra.store.training import parse_spec
from qorchestra.training import fragments as training_fragments
from qorchestra.training import trainer
from qorchestra.training.spec import PredictJob
from tests.support.waiting import wait_until

#: Settings every fault test runs under: small fragments, short deadlines and message timeouts.
FAULT_SETTINGS: dict[str, Any] = {
    "fragment_bindings": 2,
    "fragment_timeout_s": 6.0,
    "max_attempts": 4,
    "kafka_message_timeout_ms": 5000,
    "topic_check_interval_s": 1.0,
}

#: ``fault_stack``: ``with fault_stack(**settings) as stack:`` a started stack.
StackFactory = Callable[..., AbstractContextManager[Stack]]
#: ``fault_run``: ``with fault_run(**settings) as (stack, client):`` a started stack and a client.
FaultRun = Callable[..., AbstractContextManager[tuple[Stack, QorchClient]]]


def job_state(client: QorchClient, job_id: str) -> dict[str, Any]:
    """The job as the API shows it."""
    return client.job(job_id)


def wait_for_status(client: QorchClient, job_id: str, timeout: float = 180) -> dict[str, Any]:
    """Wait until the job is finished; returns it."""

    def finished() -> dict[str, Any] | None:
        job = client.job(job_id)
        return job if job["status"] in ("SUCCEEDED", "FAILED", "CANCELLED") else None

    return wait_until(
        finished,
        timeout=timeout,
        interval=0.2,
        what=f"job {job_id} to finish",
    )


def wait_for_progress(
    client: QorchClient, job_id: str, fragments: int, timeout: float = 120
) -> None:
    """Wait until at least ``fragments`` fragments of the job are counted."""
    wait_until(
        lambda: client.job(job_id)["progress"]["fragments_done"] >= fragments,
        timeout=timeout,
        interval=0.05,
        what=f"{fragments} fragments of {job_id} done",
    )


def end(stack: Stack, name: str, sig: int = signal.SIGTERM) -> int:
    """Send ``sig`` to the service ``name``, wait for it to exit; returns its exit status."""
    stack.signal(name, sig)
    proc = stack.service(name).proc
    assert proc is not None
    wait_until(lambda: proc.poll() is not None, timeout=60, what=f"{name} to exit")
    return proc.returncode


def api_ready(client: QorchClient) -> bool:
    """The API answers."""
    try:
        client.jobs(limit=1)
    except Exception:
        return False
    return True


def read_all(settings: Settings, topic: str, what: Callable[[bytes], Any], want: int) -> list[Any]:
    """Read ``topic`` from the start until ``want`` messages came (assigned, no group)."""
    consumer = Consumer(settings, [topic], None)
    got: list[Any] = []
    try:

        def more() -> bool:
            msg = consumer.poll(0.2)
            if msg is not None:
                got.append(what(msg.value() or b""))
            return len(got) >= want

        wait_until(more, timeout=60, interval=0, what=f"{want} messages on {topic}")
    finally:
        consumer.close()
    return got


def signed_result(value: bytes) -> pb.FragmentResult:
    """The result in a message of the results topic (its signature is not checked here)."""
    return pb.FragmentResult.FromString(signed_pb2.Signed.FromString(value).body)


def insider(client: QorchClient, pool: str = "local-sv") -> NodeSigner:
    """The signer of a newly enrolled agent of ``pool``: what a compromised agent holds."""
    return NodeSigner(client.enroll_node(pool, "insider")["credential"])


def inject(
    settings: Settings,
    topic: str,
    messages: Sequence[tuple[str, ProtoMessage]],
    signer: NodeSigner | None = None,
) -> None:
    """Publish ``(key, message)`` pairs on ``topic`` (signed by ``signer``, if given) and wait
    until the broker has them all."""
    producer = Producer(settings)
    try:
        sends = [producer.send(topic, k, signer.seal(m) if signer else m) for k, m in messages]
        assert producer.wait(sends)
    finally:
        producer.close()


def forged_failures(results: Sequence[pb.FragmentResult]) -> list[pb.FragmentResult]:
    """A retryable failure in the name of each result (same fragment, job and attempt)."""
    forged = []
    for result in results:
        failure = pb.FragmentResult()
        failure.CopyFrom(result)
        failure.failure.CopyFrom(pb.FragmentFailure(error="forged", retryable=True))
        forged.append(failure)
    return forged


def forged_successes(results: Sequence[pb.FragmentResult]) -> list[pb.FragmentResult]:
    """A success with wrong values in the name of each successful result (same fragment, job
    and attempt): what a corrupted or forging sender would publish."""
    forged = []
    for result in results:
        if result.WhichOneof("outcome") != "success":
            continue
        fake = pb.FragmentResult()
        fake.CopyFrom(result)
        for binding in fake.success.results:
            kind = binding.WhichOneof("value")
            if kind == "expectations":
                binding.expectations.values[:] = [v + 1.0 for v in binding.expectations.values]
            elif kind == "counts":
                for outcome in binding.counts.counts:
                    binding.counts.counts[outcome] += 1
            elif kind == "probabilities":
                binding.probabilities.probabilities.clear()
                binding.probabilities.probabilities["0"] = 1.0
        forged.append(fake)
    return forged


def metric(stack: Stack, service: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample of a service (0 when absent)."""
    text = httpx.get(stack.metrics_url(service), timeout=5).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if wanted else "") + r" (\S+)"
    match = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def serving(stack: Stack, name: str) -> bool:
    """The service ``name`` serves its metrics (it has started)."""
    try:
        metric(stack, name, "qorch_results_total")
    except httpx.HTTPError:
        return False
    return True


# ---------------------------------------------------------------- logs and the store

_FIELD = re.compile(r"(?<!\S)(\w+)=(\S+)")
_RECORD_START = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def log_records(stack: Stack, service: str, containing: str) -> list[dict[str, str]]:
    """The service's log records that contain ``containing``, each as its ``key=value`` context
    fields (``job_id``, ``fragment_id``, ...) plus its whole text under ``line``.

    A record logged with a traceback spans lines, its context after the traceback; lines that
    do not start a record belong to the one before."""
    path = stack.service(service).log_path
    assert path is not None, "the stack logs to stderr (give it a log_dir)"
    records: list[str] = []
    for line in path.read_text().splitlines():
        if _RECORD_START.match(line) or not records:
            records.append(line)
        else:
            records[-1] += "\n" + line
    return [
        {**dict(_FIELD.findall(record)), "line": record}
        for record in records
        if containing in record
    ]


def fragment_in_hand(stack: Stack, agent: str) -> dict[str, str] | None:
    """The context of the last fragment the agent logged as started and not as done or failed
    (an agent publishes a fragment's result only after logging its end), if any."""
    open_: dict[str, dict[str, str]] = {}
    for line in log_records(stack, agent, "fragment "):
        fid = line.get("fragment_id", "")
        if "fragment started" in line["line"]:
            open_.pop(fid, None)
            open_[fid] = line
        elif "fragment done" in line["line"] or "fragment failed" in line["line"]:
            open_.pop(fid, None)
    return list(open_.values())[-1] if open_ else None


def freeze_mid_fragment(stack: Stack, agent: str, timeout: float = 60) -> dict[str, str]:
    """SIGSTOP the agent while it runs a fragment; returns that fragment's log context.

    The log is read again once the agent is frozen (a stopped process writes nothing more), so
    the fragment returned is surely one the agent holds unanswered; when the agent had finished
    it in between, it is resumed and caught again."""

    def caught() -> dict[str, str] | None:
        if fragment_in_hand(stack, agent) is None:
            return None
        stack.signal(agent, signal.SIGSTOP)
        held = fragment_in_hand(stack, agent)
        if held is None:
            stack.signal(agent, signal.SIGCONT)
        return held

    return wait_until(caught, timeout=timeout, interval=0.01, what=f"{agent} mid-fragment")


def fragment_statuses(stack: Stack, job_id: str) -> dict[str, int]:
    """The job's fragment rows by status (pending, dispatched, done, failed), from Postgres."""
    engine = make_engine(stack.settings.database_url)
    try:
        with engine.connect() as conn:
            query = (
                select(Fragment.status, func.count())
                .where(Fragment.job_id == job_id)
                .group_by(Fragment.status)
            )
            return {status: int(n) for status, n in conn.execute(query)}
    finally:
        engine.dispose()


def outbox_size(stack: Stack, job_id: str | None = None) -> int:
    """Outbox rows not published yet (of one job, or all), from Postgres."""
    engine = make_engine(stack.settings.database_url)
    try:
        with engine.connect() as conn:
            query = select(func.count()).select_from(OutboxMessage)
            if job_id is not None:
                query = query.where(OutboxMessage.job_id == job_id)
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


# ---------------------------------------------------------------- circuits

SHOTS = 100


def expected_values(spec: dict[str, Any]) -> list[list[float]]:
    """What a fault-free run gives: the same circuits on LocalSimulator, run here directly."""
    simulator = LocalSimulator("braket_sv")
    program = spec["programs"][0]
    pragmas = []
    for obs in spec["result"]["observables"]:
        factors = [f"{p.lower()}(q[{i}])" for i, p in enumerate(obs) if p != "I"]
        pragmas.append("#pragma braket result expectation " + " @ ".join(factors))
    source = program["source"] + "\n".join(pragmas) + "\n"
    return [
        [float(v) for v in simulator.run(Program(source=source, inputs=b), shots=0).result().values]
        for b in program["bindings"]
    ]


def counts_job(bindings: int) -> dict[str, Any]:
    """The demo circuits measured ``SHOTS`` times per binding."""
    spec = demo_job(bindings, seed=11, shots=SHOTS)
    spec["result"] = {"type": "counts"}
    return spec


def submit_pair(client: QorchClient, bindings: int, seed: int) -> tuple[dict[str, Any], str, str]:
    """Submit an exact demo job and a counts job of ``bindings`` each: (exact spec, ids)."""
    exact = demo_job(bindings, seed=seed)
    return exact, client.submit(exact)["id"], client.submit(counts_job(bindings))["id"]


def values(client: QorchClient, job_id: str) -> list[Any]:
    """The values of a circuits job's first program."""
    return list(client.result(job_id)["result"]["programs"][0]["values"])


def check_results(client: QorchClient, exact_id: str, exact: dict[str, Any], shots_id: str) -> None:
    """Both jobs succeeded; exact values equal a fault-free run's; every binding counted
    exactly SHOTS shots."""
    for job_id in (exact_id, shots_id):
        assert wait_for_status(client, job_id)["status"] == "SUCCEEDED"
    assert values(client, exact_id) == expected_values(exact)
    counted = values(client, shots_id)
    assert [sum(c.values()) for c in counted] == [SHOTS] * len(counted)


# ---------------------------------------------------------------- training


def tiny_classifier(seed: int = 3) -> dict[str, Any]:
    """A training job small enough for a fault test, long enough to be hit mid-way: 2 qubits,
    16 samples, 21 steps (18 optimizer steps, 3 evaluations) of about ten fragments each under
    the fault tests' 2 bindings per fragment; a few seconds uninterrupted."""
    return {
        "kind": "train",
        "name": "tiny",
        "seed": seed,
        "model": {"qubits": 2, "layers": 1},
        "data": {"builtin": "moons", "samples": 16, "validation_fraction": 0.25},
        "training": {
            "loss": "bce",
            "optimizer": {"name": "adam", "learning_rate": 0.1},
            "epochs": 3,
            "batch_size": 2,
        },
    }


@dataclass(frozen=True)
class Trained:
    """What a training run ends with: the final weights and every metrics row, in order."""

    weights: list[float]
    metrics: list[dict[str, float]]


def reference_training(spec: dict[str, Any], settings: Settings) -> Trained:
    """An uninterrupted run of ``spec``, here in this process: the same state machine, the same
    fragments (``settings.fragment_bindings``) run by the agents' own executor, the state
    stored between steps as JSON as the checkpoint stores it. No Kafka, no Postgres, no faults."""
    job = parse_spec(spec)
    assert not isinstance(job, PredictJob)
    setup = trainer.build_setup(job, settings.max_qubits(job.pool))
    state, request = trainer.start(job, setup)
    executor = executor_for_pool(job.pool, settings)
    metrics: list[dict[str, float]] = []
    try:
        step = 0
        while True:
            rows: list[Any] = []
            batch = training_fragments.batched(job.pool, job.shots)
            for part in training_fragments.slices(request, settings.fragment_bindings, batch):
                fragment = training_fragments.build_fragment(
                    setup,
                    request,
                    part,
                    job_id="ref",
                    fragment_id="ref",
                    pool=job.pool,
                    shots=0,
                    step=step,
                )
                apply_encoding(fragment)
                answer = (
                    adjoint.execute(executor, fragment)
                    if adjoint.requested(fragment)
                    else executor.execute(fragment)
                )
                success = pb.FragmentSuccess(results=answer)
                rows += binding_values(
                    success, part.bindings, "expectations", len(setup.observables)
                )
            readouts = np.asarray(rows, dtype=float).reshape(request.circuits, -1)
            outcome = trainer.advance(job, setup, state, request, readouts)
            metrics += outcome.metrics
            state = json.loads(json.dumps(outcome.state))
            if outcome.request is None:
                assert outcome.result is not None
                return Trained(outcome.result["weights"], json.loads(json.dumps(metrics)))
            request = trainer.StepRequest.from_json(
                json.loads(json.dumps(outcome.request.to_json()))
            )
            step += 1
    finally:
        executor.close()


#: Metrics that measure time, not the model: no reference run can reproduce them.
WALL_CLOCK_METRICS = frozenset({"step_time_s"})


def trained(client: QorchClient, job_id: str) -> Trained:
    """What the platform's run of a training job ended with (wall-clock metrics left out)."""
    weights = client.result(job_id)["result"]["weights"]
    metrics = [
        {k: v for k, v in m["values"].items() if k not in WALL_CLOCK_METRICS}
        for m in client.metrics(job_id)["data"]
    ]
    return Trained(weights, metrics)


def training_steps(client: QorchClient, job_id: str) -> int:
    """Optimizer steps the job has recorded so far."""
    return sum(m["kind"] == "step" for m in client.metrics(job_id)["data"])


def wait_for_steps(client: QorchClient, job_id: str, steps: int, timeout: float = 120) -> None:
    """Wait until the training job has taken at least ``steps`` optimizer steps."""
    wait_until(
        lambda: training_steps(client, job_id) >= steps,
        timeout=timeout,
        interval=0.05,
        what=f"{steps} training steps of {job_id}",
    )
