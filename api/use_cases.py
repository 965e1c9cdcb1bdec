"""What the API does with jobs, apart from how it is asked.

The REST routes (``api/routes/``) and the gRPC servicer (``api/grpc_server.py``) are thin:
they translate a request into one of these calls and its answer back. Errors are domain
errors (``NotFound``, ``SpecError``, :class:`Conflict`, ...), mapped to status codes in one
table per transport (``api/errors.py`` for HTTP, ``api/grpc_server.py`` for gRPC).
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from api import admission
from api.auth import Principal
from api.event_hub import EventHub
from api.ratelimit import RateLimiter
from api.sandbox import ProgramSandbox
from qorchestra.config import Settings
from qorchestra.cutting.layout import with_progress
from qorchestra.jobs.errors import FieldError, SpecError
from qorchestra.jobs.kinds import AnyJob, job_kind
from qorchestra.kafka import Producer
from qorchestra.lifecycle import JobStatus
from qorchestra.signing import ControlPlaneSigner
from qorchestra.store import repository as repo
from qorchestra.store import training
from qorchestra.store.events import publish_events
from qorchestra.store.models import Job, JobEventRow
from qorchestra.training.spec import PredictJob, PredictRequest


class Conflict(Exception):
    """The job is not in a state that allows what was asked (HTTP 409)."""


class IdempotencyKeyReused(Exception):
    """A submission's ``Idempotency-Key`` was sent before with a different body (HTTP 422,
    naming the header)."""


@dataclass(frozen=True)
class Announcer:
    """How the API makes committed events known: on the ``events`` topic for every API
    process, and to this process's own watchers at once."""

    producer: Producer
    settings: Settings
    hub: EventHub
    signer: ControlPlaneSigner

    def announce(self, rows: Sequence[JobEventRow]) -> None:
        """Announce events whose transaction committed."""
        publish_events(self.producer, self.settings, self.signer, rows)
        for row in rows:
            self.hub.notify(row.job_id)


@dataclass(frozen=True)
class Submitted:
    """A job just stored, its cut plans with their (empty) progress, and what the submitter
    should know (``admission.screen``: no live agent serves its pool now). ``repeated``: the
    submission repeated an earlier one (its ``Idempotency-Key``), and ``job`` is the one that
    stored, as it is now."""

    job: Job
    cutting: dict[str, Any] | None
    warnings: list[str] = field(default_factory=list)
    repeated: bool = False


T = TypeVar("T")


@dataclass
class _Turn(Generic[T]):
    item: T
    batch: list[_Turn[T]] | None = None  # set for the caller that stores it
    error: BaseException | None = None
    wake: threading.Event = field(default_factory=threading.Event)


class GroupCommit(Generic[T]):
    """Submissions of one tenant stored in batches, each in one transaction: under load the
    tenant's row is locked, its unfinished jobs counted and a transaction committed once per
    batch instead of once per job.

    ``run(key, item, store)``: while fewer than ``max_running`` batches of ``key`` are being
    stored, a caller stores its item at once (a batch of one); the callers that come while
    ``max_running`` are, wait; whenever a batch is done, the first of them stores every one
    waiting (at most ``max_batch``) in a single ``store(items)``. An exception ``store``
    raises is raised to every caller of its batch. Thread-safe; a waiting caller holds no
    database connection. One batch at a time per tenant (the default) makes the largest
    batches, so the least work per job: on the 2-core development machine it admitted as many
    jobs per second as 2 or 4 at a time, with the least CPU (docs/performance.md)."""

    def __init__(self, max_batch: int = 64, max_running: int = 1) -> None:
        self.max_batch = max_batch
        self.max_running = max_running
        self._lock = threading.Lock()
        self._queues: dict[str, deque[_Turn[T]]] = {}  # waiting: only while max_running run
        self._running: dict[str, int] = {}

    def waiting(self, key: str) -> int:
        """Callers for ``key`` whose batch has not begun."""
        with self._lock:
            return len(self._queues.get(key, ()))

    def run(self, key: str, item: T, store: Callable[[list[T]], None]) -> None:
        turn = _Turn(item)
        with self._lock:
            running = self._running.get(key, 0)
            if running < self.max_running:
                self._running[key] = running + 1
                turn.batch = [turn]
            else:
                self._queues.setdefault(key, deque()).append(turn)
        if turn.batch is None:
            turn.wake.wait()  # stored in another caller's batch, or given a batch to store
            if turn.batch is None:
                if turn.error is not None:
                    raise turn.error
                return
        batch = turn.batch
        try:
            store([t.item for t in batch])
        except BaseException as exc:
            for t in batch:
                t.error = exc
            raise
        finally:
            with self._lock:
                queue = self._queues.get(key)
                successor = None
                if queue:
                    taken = [queue.popleft() for _ in range(min(len(queue), self.max_batch))]
                    successor, successor.batch = taken[0], taken
                    if not queue:
                        del self._queues[key]
                elif self._running[key] == 1:
                    del self._running[key]
                else:
                    self._running[key] -= 1
            for t in batch:
                if t is not turn:
                    t.wake.set()
            if successor is not None:
                successor.wake.set()


@dataclass
class _Submission:
    """One job on its way to the store, and what storing it came to."""

    candidate: admission.Candidate
    idempotency_key: str | None = None
    request_digest: str | None = None
    job: Job | None = None
    events: list[JobEventRow] = field(default_factory=list)
    refusal: Exception | None = None  # refused by admission (422, 429)
    failure: SQLAlchemyError | None = None  # not stored: the database refused it
    repeated: bool = False  # ``job`` is the one stored before with its Idempotency-Key


def _store(session: Session, settings: Settings, batch: list[_Submission]) -> None:
    """Admit and store a batch of one tenant's submissions in one transaction; each refused
    one gets its ``refusal`` and is not stored. When the batch's transaction fails, one
    transaction per submission, so that one job's data cannot cost the others theirs (each
    then gets its own ``failure``, if any)."""
    try:
        _store_together(session, settings, batch)
    except SQLAlchemyError as exc:
        if len(batch) == 1:
            batch[0].failure = exc
            return
        for submission in batch:
            try:
                _store_together(session, settings, [submission])
            except SQLAlchemyError as exc:
                submission.failure = exc


class _Refused(Exception):
    """A batch stored ahead of its admission had a submission refused: roll it back."""


def _store_together(session: Session, settings: Settings, batch: list[_Submission]) -> None:
    """First optimistically: store every job, then admit them (the tenant's row is locked
    last, so that another batch of the tenant stores its jobs meanwhile, and only the count
    and the commit wait for the lock). When admission refuses one, that transaction is
    rolled back, and a second admits first and stores only the jobs admitted."""
    try:
        _admit_and_store(session, settings, batch, optimistic=True)
    except _Refused:
        _admit_and_store(session, settings, batch, optimistic=False)
    for submission in batch:  # handed to other threads: detached, every attribute loaded
        for obj in (submission.job, *submission.events):
            if obj is not None and obj in session:
                session.expunge(obj)


def _admit_and_store(
    session: Session, settings: Settings, batch: list[_Submission], *, optimistic: bool
) -> None:
    for submission in batch:  # a retry starts afresh
        submission.job, submission.events = None, []
        submission.refusal, submission.failure = None, None
        submission.repeated = False
    tenant = batch[0].candidate.principal.tenant
    with session.begin():
        _find_repeats(session, tenant, batch)
        batch = [s for s in batch if s.job is None and s.refusal is None]
        if not batch:
            return
        candidates = [s.candidate for s in batch]
        if optimistic:
            _create(session, tenant, batch)
            refusals = admission.admit(session, tenant, settings, candidates, stored=len(batch))
            if any(refusal is not None for refusal in refusals):
                raise _Refused()
            return
        refusals = admission.admit(session, tenant, settings, candidates)
        for submission, refusal in zip(batch, refusals, strict=True):
            submission.refusal = refusal
        _create(session, tenant, [s for s in batch if s.refusal is None])


def _find_repeats(session: Session, tenant: str, batch: Sequence[_Submission]) -> None:
    """Mark the submissions whose ``Idempotency-Key`` the tenant used before: with the same
    body, ``job`` is the one stored then (``repeated``); with another, IdempotencyKeyReused.
    One query for the batch, in its transaction, before admission: a repeat is never counted
    by a quota again. (A submission with a key stored meanwhile by another process is caught
    by the unique index instead.)"""
    keyed = {s.idempotency_key: s for s in batch if s.idempotency_key is not None}
    if not keyed:
        return
    for key, job in repo.jobs_by_idempotency_keys(session, tenant, list(keyed)).items():
        submission = keyed[key]
        if job.request_digest != submission.request_digest:
            submission.refusal = _key_reused(key, job)
        else:
            submission.job, submission.repeated = job, True


def _key_reused(key: str, job: Job) -> IdempotencyKeyReused:
    return IdempotencyKeyReused(
        f"Idempotency-Key {key!r} was used for job {job.id}, whose body differs from this one: "
        "use a new key for a new job"
    )


def _create(session: Session, tenant: str, batch: Sequence[_Submission]) -> None:
    """Store the submissions' jobs, each with its first event (kept for the announcement)."""
    new = []
    for submission in batch:
        body, prepared = submission.candidate.job, submission.candidate.prepared
        new.append(
            repo.NewJob(
                job_id=str(uuid.uuid4()),
                name=body.name,
                kind=body.kind,
                pool=(submission.candidate.pools or body.pools)[0],
                pools=list(submission.candidate.pools) if len(body.pools) > 1 else None,
                spec=body.model_dump(mode="json"),
                result_type=prepared.result_type,
                observables=prepared.observables,
                bindings_total=prepared.bindings_total,
                tenant=tenant,
                cost_usd=submission.candidate.cost,
                max_queue_s=body.max_queue_s,
                # the cut plan, shown by GET from now on; the result keeps it
                result={"cutting": prepared.cut_plans} if prepared.cut_plans else None,
                idempotency_key=submission.idempotency_key,
                request_digest=submission.request_digest,
            )
        )
    for submission, (job, event) in zip(batch, repo.create_jobs(session, new), strict=True):
        submission.job, submission.events = job, [event]


def submit_job(
    session: Session,
    principal: Principal,
    body: AnyJob,
    settings: Settings,
    announcer: Announcer,
    sandbox: ProgramSandbox,
    limiter: RateLimiter,
    pools: admission.PoolLookup,
    commits: GroupCommit[_Submission] | None = None,
    idempotency_key: str | None = None,
) -> Submitted:
    """Screen, validate, admit and store a job, then announce it. Nothing is stored when any
    step refuses it (429, 422; a pool nobody declared, enrolled or served is a 422 too). With
    ``commits``, it is stored in a batch with the tenant's submissions that come at the same
    time (in this ``session`` or another caller's). The answer warns when no live agent serves
    the job's pool (``pools`` keeps what the store said of it).

    With ``idempotency_key``, a tenant's second submission with the key gets the job the
    first stored (``repeated``); with another body, it is refused (IdempotencyKeyReused). It
    is screened like any request (the submit rate counts it), and looked up with its batch,
    before admission, so no other quota counts it again. Two that come at once in different
    batches both pass that look-up; the unique index on the key stores one, and the other,
    refused by it, answers with that one."""
    digest = request_digest(body) if idempotency_key is not None else None
    warnings = admission.screen(body, principal, settings, sandbox, limiter, session, pools)
    plan = admission.plan_pools(
        body, settings, lambda dataset_id: training.load_dataset(session, dataset_id)
    )
    session.rollback()  # the lookups above must not hold a transaction open
    prepared, warnings = plan.prepared, [*warnings, *plan.warnings]
    submission = _Submission(
        admission.Candidate(principal, body, prepared, plan.cost, plan.pools),
        idempotency_key,
        digest,
    )
    if commits is None:
        _store(session, settings, [submission])
    else:
        commits.run(principal.tenant, submission, lambda batch: _store(session, settings, batch))
    if submission.refusal is not None:
        raise submission.refusal
    if submission.failure is not None:
        if idempotency_key is not None and repo.is_idempotency_conflict(submission.failure):
            earlier = _submitted_before(session, principal, idempotency_key, digest)
            if earlier is not None:  # stored by the submission with the key that won the race
                return earlier
        raise submission.failure
    if submission.job is None:  # every path above sets one of the three
        raise RuntimeError("the submission was neither stored nor refused")
    if submission.repeated:
        with session.begin():
            return Submitted(submission.job, cut_progress(session, submission.job), repeated=True)
    announcer.announce(submission.events)
    plans = None
    if prepared.cut_plans:  # nothing has run yet
        plans = with_progress(prepared.cut_plans, {}, prepared.binding_counts)
    return Submitted(submission.job, plans, warnings)


def request_digest(body: AnyJob) -> str:
    """sha256 of a submitted body as parsed (before validation settles any of it): what a
    repeat with the same ``Idempotency-Key`` must match."""
    text = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _submitted_before(
    session: Session, principal: Principal, key: str, digest: str | None
) -> Submitted | None:
    """The job the tenant submitted with ``key``, as it is now (None: there is none);
    IdempotencyKeyReused when it was submitted with another body."""
    with session.begin():
        job = repo.job_by_idempotency_key(session, principal.tenant, key)
        if job is None:
            return None
        if job.request_digest != digest:
            raise _key_reused(key, job)
        cutting = cut_progress(session, job)
    return Submitted(job, cutting, repeated=True)


def read_job(session: Session, principal: Principal, job_id: str) -> Job:
    """One job of the caller's tenant (any tenant's for an admin); NotFound otherwise."""
    return repo.get_job(session, job_id, principal.tenant_filter)


def cut_progress(session: Session, job: Job) -> dict[str, Any] | None:
    """The job's cut plans with each subcircuit's progress, or None when nothing is cut."""
    plans = repo.cut_plans(session, job.id)
    if not plans:
        return None
    cut = [int(key) for key in plans if key.isdigit()]
    stepwise = job_kind(job.kind).stepwise
    bindings = None if stepwise else repo.program_bindings(session, job.id, cut)
    return with_progress(plans, repo.fragment_runs(session, job.id), bindings)


def job_result(session: Session, principal: Principal, job_id: str) -> Job:
    """A SUCCEEDED job, its result loaded; Conflict while it has none."""
    job = read_job(session, principal, job_id)
    if job.status != JobStatus.SUCCEEDED or job.result is None:
        reason = f": {job.error}" if job.error else ""
        raise Conflict(f"job {job_id} is {job.status}{reason}; no result")
    return job


def cancel_job(session: Session, principal: Principal, job_id: str, announcer: Announcer) -> Job:
    """Mark the job CANCELLED (InvalidTransition once it finished) and announce it."""
    with session.begin():
        job = repo.lock_job(session, job_id, principal.tenant_filter)
        event = repo.set_status(
            session, job, JobStatus.CANCELLED, "cancelled by request", now=datetime.now(UTC)
        )
    announcer.announce([event])
    return job


def events_after(session: Session, job_id: str, after: int, limit: int) -> list[JobEventRow]:
    """Up to ``limit`` stored events of a job after seq ``after``, in order."""
    return list(repo.events_after(session, job_id, after, limit))


# ---------------------------------------------------------------- training


def metrics_history(session: Session, principal: Principal, job_id: str) -> tuple[Job, list[Any]]:
    """A job and every metric recorded for it so far, oldest first."""
    job = read_job(session, principal, job_id)
    return job, training.metrics_history(session, job_id)


def latest_checkpoint(session: Session, principal: Principal, job_id: str) -> Any:
    """A training job's latest checkpoint; NotFound for jobs without one."""
    read_job(session, principal, job_id)
    row = training.checkpoint(session, job_id)
    if row is None:
        raise repo.NotFound(f"job {job_id} has no checkpoint (not a training job, or not started)")
    return row


def prediction_spec(
    session: Session, principal: Principal, job_id: str, body: PredictRequest
) -> tuple[PredictJob, str]:
    """The ``predict`` job that classifies ``body.samples`` with the model trained by job
    ``job_id``, and the model's tenant. Conflict unless that job is a SUCCEEDED train job;
    SpecError for samples of the wrong width."""
    with session.begin():
        job = read_job(session, principal, job_id)
        tenant = job.tenant
        if job.kind != "train":
            raise Conflict(f"job {job_id} is a {job.kind} job; only train jobs predict")
        if job.status != JobStatus.SUCCEEDED.value or job.result is None:
            raise Conflict(f"job {job_id} is {job.status}; it has no trained model yet")
        result: dict[str, Any] = job.result
        pool = job.pool
        shots = int(job.spec.get("shots", 0))
    width = len(result["model"]["feature_names"])
    errors = [
        FieldError(("samples", i), f"{len(row)} features; the model was trained on {width}")
        for i, row in enumerate(body.samples)
        if len(row) != width
    ]
    if errors:
        raise SpecError(errors)
    spec = PredictJob(
        kind="predict",
        pool=pool,
        shots=shots,
        model_job_id=job_id,
        model=result["model"],
        circuit_parameters=result["circuit_parameters"],
        samples=body.samples,
    )
    return spec, tenant


def store_prediction(
    session: Session,
    principal: Principal,
    spec: PredictJob,
    model_job_id: str,
    tenant: str,
    settings: Settings,
    announcer: Announcer,
) -> str:
    """Admit (quotas, cost) and store a ``predict`` job as the model's tenant's, announce
    it; its id."""
    predict_id = str(uuid.uuid4())
    with session.begin():
        circuits = len(spec.samples) * max(1, len(spec.model["observables"]))
        cost = admission.admit_prediction(
            session, principal, tenant, spec.pool, spec.shots, circuits, settings
        )
        job = repo.create_job(
            session,
            job_id=predict_id,
            name=f"predict with {model_job_id}",
            kind="predict",
            pool=spec.pool,
            spec=spec.model_dump(mode="json"),
            result_type="expectation",
            observables=len(spec.model["observables"]),
            bindings_total=len(spec.samples),
            tenant=tenant,  # the model's tenant: the prediction is the model's child
            cost_usd=cost,
        )
        events = list(repo.events_after(session, job.id, 0))
    announcer.announce(events)
    return predict_id


def job_outcome(session: Session, job_id: str) -> dict[str, Any]:
    """Status, error and result of a job, read in a transaction of its own."""
    with session.begin():
        job = repo.get_job(session, job_id)
        return {"status": job.status, "error": job.error, "result": job.result}
