"""What the API answers, as typed objects (plain dataclasses: the SDK needs no pydantic).

Each is read from the answer's JSON by ``from_json``, which ignores fields this version does not
know (a newer API may add some); ``to_dict()`` gives the JSON as the API sent it, those fields
included. Jobs are handles with methods (``qorch.client.Job``); these are their parts and the
other resources.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from proto.qorch.v1 import jobs_pb2

T = TypeVar("T")


class JobStatus(StrEnum):
    """A job's status. A status a newer API adds reads as a member of its own name."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        """Whether the job is over (SUCCEEDED, FAILED or CANCELLED)."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)

    @classmethod
    def _missing_(cls, value: object) -> JobStatus | None:
        if not isinstance(value, str):
            return None
        member = str.__new__(cls, value)
        member._name_ = member._value_ = value
        return member


def _time(value: Any) -> datetime:
    return datetime.fromisoformat(value)


def _maybe_time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class _Json:
    """Keeps the JSON an object was read from, for ``to_dict``."""

    _json: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The object as the API sent it (a copy), fields this SDK does not know included."""
        return copy.deepcopy(self._json)

    def _keep(self, data: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_json", dict(data))


@dataclass(frozen=True)
class Progress:
    """How far a job has come, in fragments and in circuit runs (program x binding)."""

    fragments_done: int
    fragments_total: int
    bindings_done: int
    bindings_total: int
    percent: float
    redispatches: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Progress:
        return cls(
            fragments_done=data["fragments_done"],
            fragments_total=data["fragments_total"],
            bindings_done=data["bindings_done"],
            bindings_total=data["bindings_total"],
            percent=data["percent"],
            redispatches=data["redispatches"],
        )


@dataclass(frozen=True)
class Timings:
    """When a job was submitted, dispatched and finished (UTC), and how long it queued and ran
    (seconds; None until it started)."""

    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queued_s: float | None
    run_s: float | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Timings:
        return cls(
            created_at=_time(data["created_at"]),
            started_at=_maybe_time(data.get("started_at")),
            finished_at=_maybe_time(data.get("finished_at")),
            queued_s=data.get("queued_s"),
            run_s=data.get("run_s"),
        )


@dataclass(frozen=True)
class Cost:
    """What a job on a paid pool (``aws-*``, ``emu-*``) was estimated to cost at submission
    (charged to the tenant then), and what its quantum tasks actually cost (final once the job
    ended, when the tenant is given back the difference); USD, both 0 on other pools."""

    estimate_usd: float
    actual_usd: float

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Cost | None:
        if not data:
            return None  # an API older than the field
        return cls(estimate_usd=data["estimate_usd"], actual_usd=data["actual_usd"])


@dataclass(frozen=True)
class JobEvent:
    """One event of a job's log, as ``WatchJob`` streams it: ``seq`` counts from 1."""

    job_id: str
    seq: int
    type: str
    status: JobStatus
    message: str
    fragments_done: int
    fragments_total: int
    bindings_done: int
    bindings_total: int
    at: datetime | None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        """Whether this is the job's final event (the stream ends after it)."""
        return self.status.terminal

    @classmethod
    def from_proto(cls, event: jobs_pb2.JobEvent) -> JobEvent:
        name = jobs_pb2.JobStatus.Name(event.status).removeprefix("JOB_STATUS_")
        at = event.at.ToDatetime(tzinfo=UTC) if event.HasField("at") else None
        return cls(
            job_id=event.job_id,
            seq=event.seq,
            type=event.type,
            status=JobStatus(name),
            message=event.message,
            fragments_done=event.fragments_done,
            fragments_total=event.fragments_total,
            bindings_done=event.bindings_done,
            bindings_total=event.bindings_total,
            at=at,
            metrics=dict(event.metrics),
        )


@dataclass(frozen=True)
class Page(_Json, Generic[T]):
    """One page of a list: its items and how many there are over all pages."""

    data: list[T]
    count: int

    @classmethod
    def read(cls, data: Mapping[str, Any], item: Callable[[Mapping[str, Any]], T]) -> Page[T]:
        page = cls(data=[item(row) for row in data["data"]], count=data["count"])
        page._keep(data)
        return page


@dataclass(frozen=True)
class JobResult(_Json):
    """A finished job's result: ``result["programs"][i]["values"][j]`` is binding j of program
    i (expectation values in ``observables`` order, or a counts or probabilities object); a
    training job's holds its ``model``."""

    id: str
    status: JobStatus
    result: dict[str, Any]
    cost: Cost | None = None

    @property
    def values(self) -> list[list[Any]]:
        """Each program's values, one per binding (circuits jobs)."""
        return [program["values"] for program in self.result.get("programs", [])]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobResult:
        result = cls(
            id=data["id"],
            status=JobStatus(data["status"]),
            result=data["result"],
            cost=Cost.from_json(data.get("cost")),
        )
        result._keep(data)
        return result


@dataclass(frozen=True)
class Metric:
    """One step or epoch of a training job: ``kind`` is ``step``, ``epoch`` or ``final``."""

    kind: str
    step: int
    epoch: int
    values: dict[str, float]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Metric:
        return cls(
            kind=data["kind"], step=data["step"], epoch=data["epoch"], values=dict(data["values"])
        )


@dataclass(frozen=True)
class Metrics(_Json):
    """A training job's history so far, oldest first."""

    id: str
    kind: str
    status: JobStatus
    data: list[Metric]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Metrics:
        metrics = cls(
            id=data["id"],
            kind=data["kind"],
            status=JobStatus(data["status"]),
            data=[Metric.from_json(row) for row in data["data"]],
        )
        metrics._keep(data)
        return metrics


@dataclass(frozen=True)
class Prediction:
    """A sample's most probable class (``class`` on the wire) and every class's probability."""

    class_: str
    probabilities: dict[str, float]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Prediction:
        return cls(class_=data["class"], probabilities=dict(data["probabilities"]))


@dataclass(frozen=True)
class Predictions(_Json):
    """One prediction per sample, in order, and the ``predict`` job that computed them."""

    job_id: str
    predictions: list[Prediction]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Predictions:
        answer = cls(
            job_id=data["job_id"],
            predictions=[Prediction.from_json(p) for p in data["predictions"]],
        )
        answer._keep(data)
        return answer


@dataclass(frozen=True)
class Checkpoint(_Json):
    """A training job's latest state: what a restarted orchestrator resumes from."""

    id: str
    step: int
    state: dict[str, Any]
    request: dict[str, Any] | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Checkpoint:
        checkpoint = cls(
            id=data["id"], step=data["step"], state=data["state"], request=data.get("request")
        )
        checkpoint._keep(data)
        return checkpoint


@dataclass(frozen=True)
class Dataset(_Json):
    """An uploaded CSV, without its rows: ``id`` goes in a train job's ``data.dataset_id``."""

    id: str
    name: str
    rows: int
    feature_names: list[str]
    classes: list[str]
    created_at: datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Dataset:
        dataset = cls(
            id=data["id"],
            name=data["name"],
            rows=data["rows"],
            feature_names=list(data["feature_names"]),
            classes=list(data["classes"]),
            created_at=_time(data["created_at"]),
        )
        dataset._keep(data)
        return dataset


@dataclass(frozen=True)
class ApiKey(_Json):
    """An API key without its secret (only its ``prefix`` is ever shown again)."""

    id: str
    prefix: str
    tenant: str
    scopes: list[str]
    name: str
    created_at: datetime
    revoked_at: datetime | None
    configured: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApiKey:
        key = cls(**_key_fields(data))
        key._keep(data)
        return key


def _key_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": data["id"],
        "prefix": data["prefix"],
        "tenant": data["tenant"],
        "scopes": list(data["scopes"]),
        "name": data["name"],
        "created_at": _time(data["created_at"]),
        "revoked_at": _maybe_time(data.get("revoked_at")),
        "configured": bool(data.get("configured", False)),
    }


@dataclass(frozen=True)
class CreatedKey(ApiKey):
    """A new API key with its secret ``key``: shown this once."""

    key: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CreatedKey:
        key = cls(**_key_fields(data), key=data["key"])
        key._keep(data)
        return key


@dataclass(frozen=True)
class RotatedAdminKey(CreatedKey):
    """The new configured admin key (its secret shown this once) and the ones it revoked."""

    revoked: list[ApiKey] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RotatedAdminKey:
        key = cls(
            **_key_fields(data),
            key=data["key"],
            revoked=[ApiKey.from_json(row) for row in data["revoked"]],
        )
        key._keep(data)
        return key


@dataclass(frozen=True)
class Tenant(_Json):
    """A tenant's effective quotas, its budget on paid pools and what it has spent."""

    id: str
    max_concurrent_jobs: int
    max_circuits_per_job: int
    max_shots_per_job: int
    submit_rate_per_s: float
    budget_usd: float
    spent_usd: float

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Tenant:
        tenant = cls(
            id=data["id"],
            max_concurrent_jobs=data["max_concurrent_jobs"],
            max_circuits_per_job=data["max_circuits_per_job"],
            max_shots_per_job=data["max_shots_per_job"],
            submit_rate_per_s=data["submit_rate_per_s"],
            budget_usd=data["budget_usd"],
            spent_usd=data["spent_usd"],
        )
        tenant._keep(data)
        return tenant


@dataclass(frozen=True)
class Node(_Json):
    """A node agent as last seen through its heartbeats; ``state`` is RUNNING, STOPPING,
    STOPPED or OFFLINE (heartbeats stopped)."""

    id: str
    pool: str
    backend: str
    hostname: str
    pid: int
    state: str
    started_at: datetime | None
    last_heartbeat_at: datetime
    fragments_done: int
    fragments_failed: int
    bindings_done: int
    credential_id: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Node:
        node = cls(
            id=data["id"],
            pool=data["pool"],
            backend=data["backend"],
            hostname=data["hostname"],
            pid=data["pid"],
            state=data["state"],
            started_at=_maybe_time(data.get("started_at")),
            last_heartbeat_at=_time(data["last_heartbeat_at"]),
            fragments_done=data["fragments_done"],
            fragments_failed=data["fragments_failed"],
            bindings_done=data["bindings_done"],
            credential_id=data.get("credential_id"),
        )
        node._keep(data)
        return node


@dataclass(frozen=True)
class Pool(_Json):
    """A pool the platform knows: why, its live agents, and the work of its running jobs."""

    name: str
    known_from: list[str]
    agents_live: int
    agents_known: int
    credentials: int
    jobs_running: int
    jobs_waiting: int
    fragments_queued: int
    fragments_in_flight: int
    oldest_in_flight_s: float | None
    #: A live agent serves it and its device takes work now.
    online: bool = False
    #: Why it is not online (None when it is).
    offline_reason: str | None = None
    #: Its device as its agents report it: ``status``, ``queue`` (``tasks``,
    #: ``priority_tasks``, ``jobs``), ``execution_windows``, ``observed_at``; None where no
    #: agent reports a device (local simulators).
    device: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pool:
        pool = cls(
            name=data["name"],
            known_from=list(data["known_from"]),
            agents_live=data["agents_live"],
            agents_known=data["agents_known"],
            credentials=data["credentials"],
            jobs_running=data["jobs_running"],
            jobs_waiting=data["jobs_waiting"],
            fragments_queued=data["fragments_queued"],
            fragments_in_flight=data["fragments_in_flight"],
            oldest_in_flight_s=data.get("oldest_in_flight_s"),
            online=bool(data.get("online", False)),
            offline_reason=data.get("offline_reason"),
            device=data.get("device"),
        )
        pool._keep(data)
        return pool


@dataclass(frozen=True)
class NodeCredential(_Json):
    """A node credential without its secret."""

    id: str
    pool: str
    name: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeCredential:
        credential = cls(**_credential_fields(data))
        credential._keep(data)
        return credential


def _credential_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": data["id"],
        "pool": data["pool"],
        "name": data["name"],
        "created_at": _time(data["created_at"]),
        "revoked_at": _maybe_time(data.get("revoked_at")),
    }


@dataclass(frozen=True)
class EnrolledNode(NodeCredential):
    """A new node credential with its secret ``credential`` (the agent's
    ``QORCH_NODE_CREDENTIAL``): shown this once."""

    credential: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EnrolledNode:
        enrolled = cls(**_credential_fields(data), credential=data["credential"])
        enrolled._keep(data)
        return enrolled


@dataclass(frozen=True)
class Readiness(_Json):
    """Whether the API's dependencies answer (``status`` ``ready`` or ``unavailable``), and
    what was found of each."""

    status: str
    checks: dict[str, str]

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Readiness:
        readiness = cls(status=data["status"], checks=dict(data["checks"]))
        readiness._keep(data)
        return readiness


@dataclass
class JobState(_Json):
    """A job as the API last showed it (``qorch.client.Job`` adds the methods)."""

    id: str
    name: str
    kind: str
    pool: str
    status: JobStatus
    error: str | None
    waiting: str | None
    result_type: str
    progress: Progress
    timings: Timings
    last_seq: int
    cutting: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    cost: Cost | None = None
    #: The pools a job that names several may run on, in order (None: it names one).
    pools: list[str] | None = None

    @staticmethod
    def fields(data: Mapping[str, Any]) -> dict[str, Any]:
        """The constructor's arguments from a job's JSON."""
        return {
            "id": data["id"],
            "name": data["name"],
            "kind": data["kind"],
            "pool": data["pool"],
            "status": JobStatus(data["status"]),
            "error": data.get("error"),
            "waiting": data.get("waiting"),
            "result_type": data["result_type"],
            "progress": Progress.from_json(data["progress"]),
            "timings": Timings.from_json(data["timings"]),
            "last_seq": data["last_seq"],
            "cutting": data.get("cutting"),
            "warnings": list(data.get("warnings") or []),
            "cost": Cost.from_json(data.get("cost")),
            "pools": data.get("pools"),
        }

    def _update(self, data: Mapping[str, Any]) -> None:
        """Take the state of a newer answer about the same job."""
        for name, value in self.fields(data).items():
            setattr(self, name, value)
        self._keep(data)

    @property
    def done(self) -> bool:
        """Whether the job is over (as last read)."""
        return self.status.terminal
