"""Response schemas (requests use ``qorchestra.jobs.circuits.CircuitsJob``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from qorchestra.lifecycle import JobStatus
from qorchestra.store.models import Job, Node
from qorchestra.waiting import no_pool_online_reason, waiting_reason


class Progress(BaseModel):
    """How far a job has come, in fragments and in circuit runs."""

    fragments_done: int = Field(description="Fragments whose result has been counted.")
    fragments_total: int = Field(description="Fragments the job was cut into (0 until planned).")
    bindings_done: int = Field(description="Circuit runs (program x binding) finished.")
    bindings_total: int = Field(description="Circuit runs in the job.")
    percent: float = Field(description="bindings_done / bindings_total, in percent.")
    redispatches: int = Field(description="Fragments sent again after a timeout or failure.")


class Timings(BaseModel):
    """When a job was submitted, dispatched and finished (UTC, ISO 8601)."""

    created_at: datetime = Field(description="When the job was submitted and stored.")
    started_at: datetime | None = Field(description="When the job was planned and dispatched.")
    finished_at: datetime | None = Field(
        description="When the job reached SUCCEEDED, FAILED or CANCELLED; null until then."
    )
    queued_s: float | None = Field(description="Seconds from submission to dispatch.")
    run_s: float | None = Field(description="Seconds from dispatch to the end (or until now).")


class SubcircuitPublic(BaseModel):
    """One piece of a cut program: the original qubits it holds and its width."""

    qubits: list[int] = Field(description="Qubits of the original program it holds.")
    width: int = Field(description="Qubits it runs on: one per wire segment it holds.")
    ancillas: int = Field(
        description="Qubits beyond its wire segments: 0 (the sides of a cut gate measure in place)."
    )
    runs_done: int | None = Field(
        None,
        description="Circuit runs (subexperiment x binding) of this subcircuit finished so far; "
        "shown by submission and `GET /v1/jobs/{id}`, absent from the result.",
    )
    runs_total: int | None = Field(
        None,
        description="Circuit runs of this subcircuit: its subexperiments times the program's "
        "bindings; for a training job, those of the steps planned so far.",
    )


class CutPlanPublic(BaseModel):
    """How one program is cut (docs/cutting.md)."""

    cuts: int = Field(description="Cuts in the plan: gate_cuts + wire_cuts.")
    gate_cuts: int = Field(description="Cut two-qubit gates (six terms each).")
    wire_cuts: int = Field(description="Cut wires (eight terms each).")
    subcircuits: list[SubcircuitPublic] = Field(
        description="The pieces the program is cut into, each run on its own."
    )
    max_subcircuit_qubits: int = Field(description="The width limit the plan was made for.")
    sampling_overhead: float = Field(
        description="Product of gamma^2 over the cuts: shots needed for the same error grow by it."
    )
    terms: int = Field(description="Joint terms of the reconstruction.")
    exact_search: bool = Field(description="True when the search proved no cheaper plan exists.")
    search_truncated: bool = Field(
        False,
        description="True when the search ran out of its work budget "
        "(QORCH_CUT_SEARCH_TIMEOUT_S) and narrowed to a greedy one: a cheaper plan may exist.",
    )
    subexperiments: int = Field(description="Programs run per binding for this program.")
    programs_per_subcircuit: list[int] = Field(description="Subexperiments of each subcircuit.")


class CostPublic(BaseModel):
    """What a job on a paid pool (``aws-*``, ``emu-*``) was estimated to cost, and what it
    actually cost; both 0 on other pools."""

    estimate_usd: float = Field(
        description="The upper bound from the pool's price table, checked against "
        "`max_cost_usd` and the tenant's budget, and charged to the tenant at submission."
    )
    actual_usd: float = Field(
        description="What the job's quantum tasks used so far (tasks and shots, as its pool's "
        "agents reported them, priced by the pool's table): final once the job ended, when the "
        "tenant is given back the estimate less this."
    )

    @classmethod
    def of(cls, job: Job) -> CostPublic:
        return cls(estimate_usd=job.cost_usd, actual_usd=round(job.actual_cost_usd, 6))


def _waiting(job: Job) -> str | None:
    """What ``JobPublic.waiting`` says of a job."""
    if job.waiting_since is None:
        return None
    if job.pools and job.status == JobStatus.QUEUED:
        return no_pool_online_reason(job.pools, job.waiting_since)
    return waiting_reason(job.pool, job.waiting_since)


class JobPublic(BaseModel):
    """A job's state and progress."""

    id: str = Field(description="The job's id (a UUID), given on submission.")
    name: str = Field(description="The label given on submission (may be empty).")
    kind: str = Field(
        description="`circuits`, `train`, `minimize`, or `predict` (made by "
        "`POST /v1/jobs/{id}/predict`)."
    )
    pool: str = Field(
        description="The device pool its fragments run on, e.g. `local-sv`; for a job that "
        "names several pools, its first choice until the orchestrator starts it on the first "
        "of `pools` that is online."
    )
    pools: list[str] | None = Field(
        None,
        description="The pools a job that names several may run on, in its order (those whose "
        "estimate fits `max_cost_usd`); null for a job that names one.",
    )
    status: str = Field(description="QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLING or CANCELLED.")
    error: str | None = Field(description="Why the job failed or was cancelled.")
    waiting: str | None = Field(
        None,
        description="Why a running job makes no progress, and since when: 'waiting: no node "
        "agent serves pool local-dm (since ...)'; null while an agent serves its pool. It goes "
        "on when one starts; `max_queue_s` bounds the wait. A queued job that names several "
        "pools says 'waiting: none of pools ... is online (since ...)'.",
    )
    result_type: str = Field(
        description="What each binding returns: `counts`, `probabilities` or `expectation` "
        "(always `expectation` for train, minimize and predict jobs)."
    )
    progress: Progress = Field(description="Fragments and circuit runs done, of all.")
    timings: Timings = Field(description="When it was submitted, dispatched and finished.")
    cost: CostPublic = Field(description="Its cost in USD: the estimate and the actual.")
    last_seq: int = Field(description="Sequence number of the job's latest event.")
    cutting: dict[str, CutPlanPublic] | None = Field(
        None,
        description="For a job whose circuits are cut: the plan of each cut program, keyed by "
        "program index (`model` for a training job). Shown on submission and by "
        "`GET /v1/jobs/{id}`; null in lists.",
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="What the submitter should know, on the answer to `POST /v1/jobs` only "
        "(empty elsewhere): 'no node agent serves pool local-dm now: the job waits until one "
        "starts (...)' when no live agent serves the job's pool.",
    )

    @classmethod
    def of(
        cls,
        job: Job,
        now: datetime,
        cutting: dict[str, Any] | None = None,
        warnings: Sequence[str] = (),
    ) -> JobPublic:
        started, finished = job.started_at, job.finished_at
        return cls(
            id=job.id,
            name=job.name,
            kind=job.kind,
            pool=job.pool,
            pools=job.pools,
            status=job.status,
            error=job.error,
            waiting=_waiting(job),
            result_type=job.result_type,
            progress=Progress(
                fragments_done=job.fragments_done,
                fragments_total=job.fragments_total,
                bindings_done=job.bindings_done,
                bindings_total=job.bindings_total,
                percent=round(100.0 * job.bindings_done / max(1, job.bindings_total), 2),
                redispatches=job.redispatches,
            ),
            timings=Timings(
                created_at=job.created_at,
                started_at=started,
                finished_at=finished,
                queued_s=(started - job.created_at).total_seconds() if started else None,
                run_s=((finished or now) - started).total_seconds() if started else None,
            ),
            cost=CostPublic.of(job),
            last_seq=job.last_seq,
            cutting=cutting or None,
            warnings=list(warnings),
        )


class JobsPublic(BaseModel):
    """One page of jobs, newest first."""

    data: list[JobPublic] = Field(description="The jobs of this page (`cutting` is null here).")
    count: int = Field(description="Jobs matching the filter, over all pages.")


class JobResultPublic(BaseModel):
    """A finished job's result."""

    id: str = Field(description="The job's id.")
    status: str = Field(description="Always SUCCEEDED: other jobs have no result (409).")
    result: dict[str, Any] = Field(
        description="`programs[i].values[j]` is the value of binding j of program i: a list of "
        "expectation values (in `observables` order), a counts object, or a probabilities object."
    )
    cost: CostPublic = Field(description="Its cost in USD: the estimate and the actual.")


class NodePublic(BaseModel):
    """A node agent as last seen through its heartbeats."""

    id: str = Field(description="The agent's id (`QORCH_NODE_ID`, by default hostname-pid).")
    pool: str = Field(description="The pool whose fragments it consumes, e.g. `local-sv`.")
    backend: str = Field(
        description="What runs its fragments: `braket_sv`, `braket_dm`, or a Braket device ARN."
    )
    hostname: str = Field(description="Host the agent runs on.")
    pid: int = Field(description="Process id of the agent on that host.")
    state: str = Field(description="RUNNING, STOPPING, STOPPED, or OFFLINE (heartbeats stopped).")
    started_at: datetime | None = Field(
        description="When the agent process started (UTC); null if its heartbeats did not say."
    )
    last_heartbeat_at: datetime = Field(
        description="When its latest heartbeat was sent (UTC); older than "
        "`QORCH_NODE_OFFLINE_AFTER_S` means OFFLINE."
    )
    fragments_done: int = Field(
        description="Fragments it ran and answered with a result, since the agent started."
    )
    fragments_failed: int = Field(
        description="Fragments it answered with a failure (error text), since the agent started."
    )
    bindings_done: int = Field(
        description="Circuit runs (bindings) in the fragments it ran, since the agent started."
    )
    credential_id: str | None = Field(
        description="The node credential that signs its heartbeats (`qorch nodes credentials`)."
    )

    @classmethod
    def of(cls, node: Node, now: datetime, offline_after_s: float) -> NodePublic:
        stale = (now - node.last_heartbeat_at).total_seconds() > offline_after_s
        state = "OFFLINE" if stale and node.state != "STOPPED" else node.state
        return cls(
            id=node.id,
            pool=node.pool,
            backend=node.backend,
            hostname=node.hostname,
            pid=node.pid,
            state=state,
            started_at=node.started_at,
            last_heartbeat_at=node.last_heartbeat_at,
            fragments_done=node.fragments_done,
            fragments_failed=node.fragments_failed,
            bindings_done=node.bindings_done,
            credential_id=node.credential_id,
        )


class NodesPublic(BaseModel):
    """Every known node agent, by pool then id."""

    data: list[NodePublic] = Field(description="The agents, stopped and offline ones included.")
    count: int = Field(description="Agents in `data`.")


class Readiness(BaseModel):
    """Whether the API's dependencies answer: 200 when all do, 503 otherwise."""

    status: str = Field(description="`ready` or `unavailable`.")
    checks: dict[str, str] = Field(description="Each dependency and what was found.")
