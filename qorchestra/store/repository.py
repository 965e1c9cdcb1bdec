"""Repository functions. Each takes a session, flushes, and never commits: callers own the
transaction (``with session_scope(factory) as session: ...``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    any_,
    bindparam,
    delete,
    func,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, array, distinct_on, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from qorchestra.config import creates_quantum_tasks
from qorchestra.costs import refund_usd
from qorchestra.jobs.kinds import KINDS
from qorchestra.lifecycle import JobStatus, check_transition
from qorchestra.quantum_tasks import TERMINAL_STATES, ReportedTask
from qorchestra.signing import ControlPlaneSigner, with_nonce
from qorchestra.store.models import (
    ApiKey,
    DatasetRow,
    Fragment,
    Job,
    JobEventRow,
    Node,
    NodeCredentialRow,
    OutboxMessage,
    QuantumTaskRow,
    Tenant,
)
from qorchestra.store.notify import announce_job


class NotFound(LookupError):
    """The job (or other object) does not exist. Mapped to 404 / NOT_FOUND in one place each."""


class FragmentStatus:
    PENDING = "pending"
    DISPATCHED = "dispatched"
    DONE = "done"
    FAILED = "failed"


# ---------------------------------------------------------------- jobs


@dataclass(frozen=True)
class NewJob:
    """What a new job is stored with (``create_jobs``)."""

    job_id: str
    name: str
    kind: str
    pool: str
    spec: dict[str, Any]
    result_type: str
    observables: int
    bindings_total: int
    tenant: str = "default"
    cost_usd: float = 0.0
    max_queue_s: float | None = None
    result: dict[str, Any] | None = None  # shown while it runs (a cut job's plan)
    idempotency_key: str | None = None  # unique per tenant (``job_by_idempotency_key``)
    request_digest: str | None = None  # of the body submitted with that key
    #: The pools it may run on, in order, when it names several (None: ``pool`` only).
    pools: list[str] | None = None


def create_jobs(session: Session, jobs: Sequence[NewJob]) -> list[tuple[Job, JobEventRow]]:
    """Insert QUEUED jobs and the first event of each, in one INSERT per table; each job with
    its event, in order."""
    created: list[tuple[Job, JobEventRow]] = []
    if not jobs:
        return created
    for new in jobs:
        job = Job(
            id=new.job_id,
            tenant=new.tenant,
            cost_usd=new.cost_usd,
            max_queue_s=new.max_queue_s,
            result=new.result,
            idempotency_key=new.idempotency_key,
            request_digest=new.request_digest,
            name=new.name,
            kind=new.kind,
            pool=new.pool,
            pools=new.pools,
            status=JobStatus.QUEUED.value,
            spec=new.spec,
            result_type=new.result_type,
            observables=new.observables,
            bindings_total=new.bindings_total,
            last_seq=0,
            fragments_total=0,
            fragments_done=0,
            bindings_done=0,
            redispatches=0,
        )
        where = f"one of pools {', '.join(new.pools)}" if new.pools else f"pool {new.pool}"
        message = f"{new.bindings_total} bindings on {where}"
        created.append((job, _next_event(job, "submitted", message)))
    session.add_all([job for job, _ in created])
    session.flush()  # the jobs before their events (the events' foreign key)
    session.add_all([event for _, event in created])
    session.flush()
    announce_job(session)
    return created


def create_job(
    session: Session,
    *,
    job_id: str,
    name: str,
    kind: str,
    pool: str,
    spec: dict[str, Any],
    result_type: str,
    observables: int,
    bindings_total: int,
    tenant: str = "default",
    cost_usd: float = 0.0,
    max_queue_s: float | None = None,
) -> Job:
    """Insert a QUEUED job of ``tenant`` and its first event."""
    new = NewJob(
        job_id,
        name,
        kind,
        pool,
        spec,
        result_type,
        observables,
        bindings_total,
        tenant,
        cost_usd,
        max_queue_s,
    )
    return create_jobs(session, [new])[0][0]


#: The unique index that keeps one job per tenant and ``Idempotency-Key`` (migration 0008).
IDEMPOTENCY_INDEX = "uq_jobs_tenant_idempotency_key"


def job_by_idempotency_key(session: Session, tenant: str, key: str) -> Job | None:
    """The job ``tenant`` submitted with ``key``, if any."""
    query = select(Job).where(Job.tenant == tenant, Job.idempotency_key == key)
    return session.execute(query).scalar_one_or_none()


def jobs_by_idempotency_keys(session: Session, tenant: str, keys: Sequence[str]) -> dict[str, Job]:
    """The jobs ``tenant`` submitted with any of ``keys``, by key."""
    query = select(Job).where(Job.tenant == tenant, Job.idempotency_key.in_(keys))
    return {
        job.idempotency_key: job for job in session.execute(query).scalars() if job.idempotency_key
    }


def is_idempotency_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is an insert refused because the tenant already has a job with that
    ``Idempotency-Key`` (another submission with the key stored it first)."""
    if not isinstance(exc, IntegrityError):
        return False
    diag = getattr(exc.orig, "diag", None)
    return getattr(diag, "constraint_name", None) == IDEMPOTENCY_INDEX


def get_job(session: Session, job_id: str, tenant: str | None = None) -> Job:
    """The job, or NotFound; with ``tenant``, another tenant's job is NotFound too."""
    job = session.get(Job, job_id)
    if job is None or (tenant is not None and job.tenant != tenant):
        raise NotFound(f"job {job_id} not found")
    return job


def cut_plans(session: Session, job_id: str) -> dict[str, Any] | None:
    """The cut plan kept under the job's ``result.cutting`` (without loading the result)."""
    value = session.execute(select(Job.result["cutting"]).where(Job.id == job_id)).scalar()
    return value if isinstance(value, dict) and value else None


def fragment_runs(session: Session, job_id: str) -> dict[int, tuple[int, int]]:
    """Per fragment ``program_index`` of the job: circuit runs (bindings) in its fragments
    written so far, and in those done. One aggregate query; no result is loaded."""
    done = func.coalesce(
        func.sum(Fragment.binding_count).filter(Fragment.status == FragmentStatus.DONE), 0
    )
    rows = session.execute(
        select(Fragment.program_index, func.sum(Fragment.binding_count), done)
        .where(Fragment.job_id == job_id)
        .group_by(Fragment.program_index)
    )
    return {int(index): (int(written), int(finished)) for index, written, finished in rows}


def program_bindings(session: Session, job_id: str, indices: Sequence[int]) -> dict[int, int]:
    """Bindings of the job's programs at ``indices``, read inside the stored spec (the spec
    itself is not loaded)."""
    if not indices:
        return {}
    counts = [
        func.coalesce(func.jsonb_array_length(Job.spec["programs"][i]["bindings"]), 0)
        for i in indices
    ]
    row = session.execute(select(*counts).where(Job.id == job_id)).one()
    return {i: int(count) for i, count in zip(indices, row, strict=True)}


def lock_job(session: Session, job_id: str, tenant: str | None = None) -> Job:
    """The job, locked for update until the transaction ends; NotFound if missing (or, with
    ``tenant``, another tenant's).

    The tenant is part of the locking query: Postgres locks only the rows that match the whole
    condition, so another tenant's job is never locked (nor waited for) by this call."""
    query = select(Job).where(Job.id == job_id)
    if tenant is not None:
        query = query.where(Job.tenant == tenant)
    job = session.execute(query.with_for_update()).scalar_one_or_none()
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


def list_jobs(
    session: Session,
    *,
    status: str | None,
    limit: int,
    offset: int,
    tenant: str | None = None,
) -> tuple[Sequence[Job], int]:
    """A page of jobs (of ``tenant``, or all), newest first, and the count of all that match."""
    query = select(Job)
    count = select(func.count()).select_from(Job)
    if tenant is not None:
        query = query.where(Job.tenant == tenant)
        count = count.where(Job.tenant == tenant)
    if status:
        query = query.where(Job.status == status)
        count = count.where(Job.status == status)
    rows = session.execute(
        query.order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)
    ).scalars()
    return list(rows), int(session.execute(count).scalar_one())


def set_status(
    session: Session,
    job: Job,
    status: JobStatus,
    message: str = "",
    *,
    now: datetime,
    metrics: dict[str, float] | None = None,
) -> JobEventRow:
    """Move a locked job to ``status`` (checked against the lifecycle) and record the event
    (with ``metrics``, e.g. the cut plan's numbers on ``running``). A job that ends gives its
    tenant back its estimate less its actual cost (:func:`settle_cost`), in the caller's
    transaction: the lifecycle lets a job end once, so it is settled once."""
    check_transition(job.status, status.value)
    job.status = status.value
    if status == JobStatus.RUNNING:
        job.started_at = now
    if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        job.finished_at = now
        job.waiting_since = None
        settle_cost(session, job)
        if status != JobStatus.SUCCEEDED:
            job.error = message or None
            drop_outbox(session, job.id)
            want_task_cancels(session, job, now=now)
    return append_event(session, job, status.value.lower(), message, metrics)


def add_actual_cost(session: Session, job: Job, cost_usd: float) -> None:
    """Add what one of the locked job's fragments actually cost (counted once: the caller
    applies each fragment's result once)."""
    job.actual_cost_usd += cost_usd


def settle_cost(session: Session, job: Job) -> float:
    """Correct the tenant's spend of a job that ends from its estimate (charged at submission)
    to its actual cost: give back the estimate less the actual (``costs.refund_usd``), so the
    tenant pays the actual, never less; work that never ran, cancelled or failed, is given
    back whole. One UPDATE, which locks the tenant's row until the transaction ends. Returns
    the refund."""
    refund = refund_usd(job.cost_usd, job.actual_cost_usd)
    if refund != 0:
        session.execute(
            update(Tenant)
            .where(Tenant.id == job.tenant)
            .values(spent_usd=Tenant.spent_usd - refund)
        )
    return refund


def active_pools(session: Session) -> set[str]:
    """Pools of the jobs that are not finished."""
    return set(
        session.execute(
            select(Job.pool).distinct().where(Job.status.in_(["QUEUED", "RUNNING"]))
        ).scalars()
    )


#: Queued jobs, oldest first, among which the fairest is claimed (bounds the ordering's work).
CLAIM_WINDOW = 500


def _startable(online: Collection[str] | None) -> ColumnElement[bool]:
    """Whether a queued job may start now: it names one pool, or one of the pools it names
    is among the ``online`` ones (None: any job may start)."""
    if online is None:
        return true()
    if not online:
        return Job.pools.is_(None)
    return or_(Job.pools.is_(None), Job.pools.has_any(array(sorted(online), type_=String)))


def claim_queued_job(session: Session, online: Collection[str] | None = None) -> Job | None:
    """The next QUEUED job to plan, locked; other planners skip it. A job that names several
    pools is claimed only when one of them is among the ``online`` pools (None: whatever its
    pools); a job that names one starts at once and waits there for an agent.

    Fair between tenants: of the oldest ``CLAIM_WINDOW`` queued jobs, the one whose tenant has
    the fewest jobs RUNNING on its pool, the oldest among equals. A tenant that queues many
    jobs therefore gets one pool slot in turn with every other tenant, not all of them first.
    """
    queued = (
        select(Job.id)
        .where(Job.status == JobStatus.QUEUED.value, _startable(online))
        .order_by(Job.created_at)
        .limit(CLAIM_WINDOW)
        .subquery()
    )
    running = aliased(Job)
    share = (
        select(func.count())
        .select_from(running)
        .where(
            running.tenant == Job.tenant,
            running.pool == Job.pool,
            running.status == JobStatus.RUNNING.value,
        )
        .correlate(Job)
        .scalar_subquery()
    )
    return session.execute(
        select(Job)
        .where(Job.id.in_(select(queued.c.id)), Job.status == JobStatus.QUEUED.value)
        .order_by(share, Job.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).scalar_one_or_none()


# ---------------------------------------------------------------- events


def append_event(
    session: Session,
    job: Job,
    type_: str,
    message: str = "",
    metrics: dict[str, float] | None = None,
) -> JobEventRow:
    """Record the next event of a (locked or new) job; seq grows by one per event."""
    row = _next_event(job, type_, message, metrics)
    session.add(row)
    session.flush()
    return row


def _next_event(
    job: Job, type_: str, message: str = "", metrics: dict[str, float] | None = None
) -> JobEventRow:
    """The job's next event, not yet added: its seq is the job's ``last_seq``, plus one.

    The event's time is now, when it is recorded (Postgres ``now()`` would be the start of
    the transaction, which may have begun well before).
    """
    job.last_seq += 1
    return JobEventRow(
        created_at=datetime.now(UTC),
        job_id=job.id,
        seq=job.last_seq,
        type=type_,
        status=job.status,
        message=message,
        fragments_done=job.fragments_done,
        fragments_total=job.fragments_total,
        bindings_done=job.bindings_done,
        bindings_total=job.bindings_total,
        metrics=metrics or {},
    )


def events_after(
    session: Session, job_id: str, after_seq: int, limit: int = 500
) -> Sequence[JobEventRow]:
    """Stored events of a job with seq > ``after_seq``, in order."""
    return list(
        session.execute(
            select(JobEventRow)
            .where(JobEventRow.job_id == job_id, JobEventRow.seq > after_seq)
            .order_by(JobEventRow.seq)
            .limit(limit)
        ).scalars()
    )


# ---------------------------------------------------------------- fragments and outbox

#: ``Session.info`` key set by the functions that add outbox messages (see ``wrote_outbox``).
OUTBOX_WRITTEN = "qorch.outbox_written"


@dataclass(frozen=True)
class NewFragment:
    """A planned fragment and its serialized Kafka message."""

    id: str
    program_index: int
    binding_offset: int
    binding_count: int
    payload: bytes
    #: Training step (0 for circuits jobs).
    step: int = 0
    #: Keep the payload on the fragment row, for fragments not rebuilt from the job's spec.
    keep_payload: bool = False


def add_fragments(
    session: Session,
    job: Job,
    fragments: Sequence[NewFragment],
    topic: str,
    signer: ControlPlaneSigner,
) -> None:
    """Insert fragments and, in the same transaction, their outbox messages: each the first
    attempt's, with its dispatch nonce (``signer``)."""
    session.add_all(
        Fragment(
            id=f.id,
            job_id=job.id,
            program_index=f.program_index,
            binding_offset=f.binding_offset,
            binding_count=f.binding_count,
            status=FragmentStatus.PENDING,
            attempt=1,
            step=f.step,
            payload=f.payload if f.keep_payload else None,
        )
        for f in fragments
    )
    session.add_all(
        OutboxMessage(
            topic=topic,
            key=f.id,
            payload=with_nonce(f.payload, signer.nonce(f.id, 1)),
            job_id=job.id,
            fragment_id=f.id,
        )
        for f in fragments
    )
    job.fragments_total += len(fragments)
    job.fragments_written += len(fragments)
    session.info[OUTBOX_WRITTEN] = True
    session.flush()


def enqueue(
    session: Session,
    *,
    topic: str,
    key: str,
    payload: bytes,
    job_id: str | None = None,
    fragment_id: str | None = None,
) -> None:
    """Add one message to the outbox."""
    session.add(
        OutboxMessage(topic=topic, key=key, payload=payload, job_id=job_id, fragment_id=fragment_id)
    )
    session.info[OUTBOX_WRITTEN] = True
    session.flush()


def wrote_outbox(session: Session) -> bool:
    """Whether this session added outbox messages: once it commits, the relay has work."""
    return bool(session.info.get(OUTBOX_WRITTEN))


def pending_outbox(session: Session, limit: int) -> Sequence[OutboxMessage]:
    """The oldest unpublished messages, locked; concurrent relays skip them."""
    return list(
        session.execute(
            select(OutboxMessage)
            .order_by(OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars()
    )


def mark_published(
    session: Session, rows: Sequence[OutboxMessage], *, now: datetime, timeout_s: float
) -> None:
    """Delete published outbox rows; their fragments are now dispatched, with a deadline."""
    if not rows:
        return
    session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_([r.id for r in rows])))
    fragment_ids = [r.fragment_id for r in rows if r.fragment_id]
    if fragment_ids:
        session.execute(
            update(Fragment)
            .where(
                Fragment.id.in_(fragment_ids),
                Fragment.status.in_([FragmentStatus.PENDING, FragmentStatus.DISPATCHED]),
            )
            .values(
                status=FragmentStatus.DISPATCHED,
                dispatched_at=now,
                deadline_at=now + timedelta(seconds=timeout_s),
            )
        )
    session.flush()


def drop_outbox(session: Session, job_id: str) -> None:
    """Forget the job's unpublished fragment messages (the job ended).

    Rows a relay holds at this moment are left to it: it is publishing them, and their results
    will be ignored as late. Waiting for the relay instead closed a lock cycle: the relay, once
    the broker acknowledged, updates the fragment a fast agent's result already locked, and
    that result waits for the job this transaction holds (a cancel right after planning got
    DeadlockDetected).
    """
    unlocked = (
        select(OutboxMessage.id)
        .where(OutboxMessage.job_id == job_id, OutboxMessage.fragment_id.is_not(None))
        .with_for_update(skip_locked=True)
    )
    session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(unlocked.scalar_subquery())))


def job_pool(session: Session, job_id: str) -> str | None:
    """The pool of a job, without loading or locking it."""
    return session.execute(select(Job.pool).where(Job.id == job_id)).scalar_one_or_none()


def lock_fragment(session: Session, fragment_id: str) -> Fragment | None:
    """The fragment, locked for update; None when unknown."""
    return session.execute(
        select(Fragment).where(Fragment.id == fragment_id).with_for_update()
    ).scalar_one_or_none()


def overdue_fragments(session: Session, *, now: datetime, limit: int) -> Sequence[Fragment]:
    """Dispatched fragments past their deadline, locked; other sweepers skip them."""
    return list(
        session.execute(
            select(Fragment)
            .where(Fragment.status == FragmentStatus.DISPATCHED, Fragment.deadline_at < now)
            .order_by(Fragment.deadline_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars()
    )


def unanswered_fragments(session: Session, limit: int) -> Sequence[Fragment]:
    """Dispatched, unanswered fragments of running jobs, locked; other callers skip them."""
    return list(
        session.execute(
            select(Fragment)
            .join(Job, Job.id == Fragment.job_id)
            .where(Fragment.status == FragmentStatus.DISPATCHED, Job.status == "RUNNING")
            .order_by(Fragment.dispatched_at)
            .limit(limit)
            .with_for_update(of=Fragment, skip_locked=True)
        ).scalars()
    )


def count_step_fragments(session: Session, job_id: str, step: int) -> int:
    """How many fragments of a training step are written (the position of its next window)."""
    return int(
        session.execute(
            select(func.count())
            .select_from(Fragment)
            .where(Fragment.job_id == job_id, Fragment.step == step)
        ).scalar_one()
    )


def step_fragments(session: Session, job_id: str, step: int) -> Sequence[Fragment]:
    """One training step's fragments in binding order."""
    return list(
        session.execute(
            select(Fragment)
            .where(Fragment.job_id == job_id, Fragment.step == step)
            .order_by(Fragment.binding_offset)
        ).scalars()
    )


def finished_fragments(session: Session, job_id: str) -> Sequence[Fragment]:
    """The job's done fragments in program and binding order."""
    return list(
        session.execute(
            select(Fragment)
            .where(Fragment.job_id == job_id, Fragment.status == FragmentStatus.DONE)
            .order_by(Fragment.program_index, Fragment.binding_offset)
        ).scalars()
    )


# ---------------------------------------------------------------- quantum tasks


@dataclass(frozen=True)
class TaskReport:
    """One agent's report of the quantum tasks of an attempt of a fragment, checked."""

    attempt: int  # the attempt the report answers
    node_id: str
    device_arn: str
    tasks: Sequence[ReportedTask]


def record_tasks(
    session: Session, fragment: Fragment, report: TaskReport, *, now: datetime, cancel: bool
) -> int:
    """Record the reported tasks of a (locked) fragment: new ones are inserted, known ones get
    the state, node and attempt of this report. With ``cancel`` (nobody will use them: their
    job ended unfinished) they are marked for the pool's agents to cancel.

    Returns how many were new; ValueError, before anything changed, when a reported ARN is
    recorded for another fragment or another task of this one (untrusted input)."""
    rows = [
        {
            "arn": task.arn,
            "fragment_id": fragment.id,
            "job_id": fragment.job_id,
            "task_index": task.index,
            "generation": task.generation,
            "attempt": report.attempt,
            "client_token": task.client_token,
            "device_arn": report.device_arn,
            "status": task.status,
            "node_id": report.node_id,
            "reported_attempt": report.attempt,
            "reported_at": now,
            "cancel_wanted_at": now if cancel and task.status not in TERMINAL_STATES else None,
        }
        for task in report.tasks
    ]
    stmt = insert(QuantumTaskRow).values(rows)
    table = QuantumTaskRow.__table__.c
    same_task = (
        (table.fragment_id == stmt.excluded.fragment_id)
        & (table.task_index == stmt.excluded.task_index)
        & (table.generation == stmt.excluded.generation)
        & (table.client_token == stmt.excluded.client_token)
    )
    upsert = stmt.on_conflict_do_update(
        index_elements=[table.arn],
        set_={
            "status": stmt.excluded.status,
            "node_id": stmt.excluded.node_id,
            "reported_attempt": stmt.excluded.reported_attempt,
            "reported_at": stmt.excluded.reported_at,
            "cancel_wanted_at": func.coalesce(
                table.cancel_wanted_at, stmt.excluded.cancel_wanted_at
            ),
        },
        where=same_task,
    ).returning(table.arn, literal_column("xmax = 0").label("inserted"))
    written = session.execute(upsert).all()
    if len(written) != len(rows):
        mine = {arn for arn, _ in written}
        stolen = [row["arn"] for row in rows if row["arn"] not in mine]
        raise ValueError(f"task {stolen[0]} is recorded for another task or fragment")
    return sum(1 for _, inserted in written if inserted)


def recorded_tasks(session: Session, fragment_id: str) -> Sequence[QuantumTaskRow]:
    """The fragment's recorded tasks, the latest of each task index (the replacement of a
    cancelled task is of the next generation), by index."""
    return list(
        session.execute(
            select(QuantumTaskRow)
            .where(QuantumTaskRow.fragment_id == fragment_id)
            .order_by(
                QuantumTaskRow.task_index,
                QuantumTaskRow.generation.desc(),
                QuantumTaskRow.created_at.desc(),
            )
            .ext(distinct_on(QuantumTaskRow.task_index))
        ).scalars()
    )


def want_task_cancels(session: Session, job: Job, *, now: datetime) -> int:
    """Mark the recorded tasks of the job's unfinished fragments that may still run, for the
    pool's agents to cancel (the job ended unfinished); returns how many. Nothing to do on a
    pool without quantum tasks."""
    if not creates_quantum_tasks(job.pool):
        return 0
    unfinished = select(Fragment.id).where(
        Fragment.job_id == job.id, Fragment.status != FragmentStatus.DONE
    )
    result = session.execute(
        update(QuantumTaskRow)
        .where(
            QuantumTaskRow.job_id == job.id,
            QuantumTaskRow.cancel_wanted_at.is_(None),
            QuantumTaskRow.status.not_in(TERMINAL_STATES),
            QuantumTaskRow.fragment_id.in_(unfinished),
        )
        .values(cancel_wanted_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def tasks_to_cancel(session: Session, limit: int) -> list[tuple[QuantumTaskRow, str]]:
    """Tasks marked for cancelling whose request has not been queued yet, each with its job's
    pool, locked (other orchestrators skip them); the oldest marks first."""
    rows = session.execute(
        select(QuantumTaskRow, Job.pool)
        .join(Job, Job.id == QuantumTaskRow.job_id)
        .where(
            QuantumTaskRow.cancel_wanted_at.is_not(None), QuantumTaskRow.cancel_sent_at.is_(None)
        )
        .order_by(QuantumTaskRow.cancel_wanted_at)
        .limit(limit)
        .with_for_update(of=QuantumTaskRow, skip_locked=True)
    )
    return [(row, pool) for row, pool in rows]


# ---------------------------------------------------------------- windows

#: Unanswered fragment states: planned (in the outbox) or dispatched.
IN_FLIGHT = (FragmentStatus.PENDING, FragmentStatus.DISPATCHED)

#: Job kinds planned in windows: circuits jobs, and each step of the training kinds
#: (``orchestrator/training_steps.py``).
WINDOWED_KINDS = tuple(KINDS)


def in_flight(session: Session, *, job_id: str | None = None, pool: str | None = None) -> int:
    """Unanswered fragments of one job, or of the running jobs of one pool."""
    query = select(func.count()).select_from(Fragment).where(Fragment.status.in_(IN_FLIGHT))
    if job_id is not None:
        query = query.where(Fragment.job_id == job_id)
    if pool is not None:
        query = query.join(Job, Job.id == Fragment.job_id).where(
            Job.pool == pool, Job.status == "RUNNING"
        )
    return int(session.execute(query).scalar_one())


def in_flight_by_tenant(session: Session, pool: str) -> dict[str, int]:
    """Unanswered fragments of the running jobs of one pool, by tenant."""
    rows = session.execute(
        select(Job.tenant, func.count())
        .select_from(Fragment)
        .join(Job, Job.id == Fragment.job_id)
        .where(Fragment.status.in_(IN_FLIGHT), Job.pool == pool, Job.status == "RUNNING")
        .group_by(Job.tenant)
    )
    return {tenant: int(count) for tenant, count in rows}


def jobs_to_top_up(session: Session, limit: int) -> Sequence[Job]:
    """Running jobs that still have fragments to write, locked: the oldest of each tenant,
    then the second oldest of each, and so on, so no tenant's many jobs crowd out another's
    from the ``limit``; oldest first within each turn."""
    turns = (
        select(
            Job.id,
            func.row_number().over(partition_by=Job.tenant, order_by=Job.started_at).label("turn"),
        )
        .where(
            Job.status == "RUNNING",
            Job.kind.in_(WINDOWED_KINDS),
            Job.fragments_total > Job.fragments_written,
        )
        .subquery()
    )
    return list(
        session.execute(
            select(Job)
            .join(turns, turns.c.id == Job.id)
            .order_by(turns.c.turn, Job.started_at)
            .limit(limit)
            .with_for_update(of=Job, skip_locked=True)
        ).scalars()
    )


def live_agents(session: Session, since: datetime) -> dict[str, int]:
    """Node agents per pool that are RUNNING and sent a heartbeat at ``since`` or later."""
    rows = session.execute(
        select(Node.pool, func.count())
        .where(Node.state == "RUNNING", Node.last_heartbeat_at >= since)
        .group_by(Node.pool)
    )
    return {pool: int(count) for pool, count in rows}


def busy_agents(session: Session, live_since: datetime, reported_since: datetime) -> dict[str, int]:
    """Live node agents per pool (as ``live_agents``) that are waiting on the quantum tasks of
    a dispatched fragment: they reported them at ``reported_since`` or later. Such an agent
    takes no other fragment until those tasks end."""
    rows = session.execute(
        select(Node.pool, func.count(QuantumTaskRow.node_id.distinct()))
        .select_from(QuantumTaskRow)
        .join(Node, Node.id == QuantumTaskRow.node_id)
        .join(Fragment, Fragment.id == QuantumTaskRow.fragment_id)
        .where(
            QuantumTaskRow.reported_at >= reported_since,
            Fragment.status == FragmentStatus.DISPATCHED,
            Node.state == "RUNNING",
            Node.last_heartbeat_at >= live_since,
        )
        .group_by(Node.pool)
    )
    return {pool: int(count) for pool, count in rows}


def _agentless(live: Collection[str]) -> ColumnElement[bool]:
    """Whether a job's pool is not among the ``live`` pools."""
    return Job.pool.not_in(list(live)) if live else true()


def jobs_to_watch(
    session: Session, live: Collection[str], now: datetime, limit: int
) -> Sequence[Job]:
    """Running jobs whose waiting mark is out of date, locked (others skip them): not marked
    though no live agent serves their pool, marked though one does, or waiting longer than
    their ``max_queue_s``."""
    agentless = _agentless(live)
    waited_too_long = _waited_too_long(now)
    return list(
        session.execute(
            select(Job)
            .where(
                Job.status == "RUNNING",
                or_(
                    and_(Job.waiting_since.is_(None), agentless),
                    and_(Job.waiting_since.is_not(None), or_(~agentless, waited_too_long)),
                ),
            )
            .order_by(Job.started_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars()
    )


def _waited_too_long(now: datetime) -> ColumnElement[bool]:
    """Whether a job waiting for an agent (``waiting_since``) has waited past its
    ``max_queue_s``."""
    return and_(
        Job.max_queue_s.is_not(None),
        Job.waiting_since < now - func.make_interval(0, 0, 0, 0, 0, 0, Job.max_queue_s),
    )


def queued_jobs_to_watch(
    session: Session, online: Collection[str], now: datetime, limit: int
) -> Sequence[Job]:
    """Queued jobs that name several pools, none of them ``online``, whose waiting mark is out
    of date, locked (others skip them): not marked yet, or waiting longer than their
    ``max_queue_s``. (A job that can start is unmarked when the orchestrator claims it.)"""
    waited_too_long = _waited_too_long(now)
    return list(
        session.execute(
            select(Job)
            .where(
                Job.status == JobStatus.QUEUED.value,
                Job.pools.is_not(None),
                ~_startable(online),
                or_(Job.waiting_since.is_(None), waited_too_long),
            )
            .order_by(Job.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars()
    )


def hold_deadlines(session: Session, live: Collection[str], deadline: datetime) -> int:
    """Move the deadlines of the dispatched fragments of running jobs on pools not among
    ``live`` (those with a live agent free to take work) on to ``deadline``: an attempt's
    clock runs only while an agent could answer it. Returns how many fragments were held."""
    agentless_jobs = select(Job.id).where(Job.status == "RUNNING", _agentless(live))
    result = session.execute(
        update(Fragment)
        .where(
            Fragment.status == FragmentStatus.DISPATCHED,
            Fragment.deadline_at < deadline,
            Fragment.job_id.in_(agentless_jobs),
        )
        .values(deadline_at=deadline)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def cuts_circuits(session: Session, job_id: str) -> bool:
    """Whether a circuits job cuts its circuits, read without loading its (possibly huge) spec."""
    return bool(session.execute(select(Job.spec["cutting"]).where(Job.id == job_id)).scalar())


# ---------------------------------------------------------------- nodes


def upsert_node(session: Session, values: dict[str, Any]) -> bool:
    """Insert or refresh a node from its heartbeat (``values`` has the Node columns, with
    ``credential_id``). A row is refreshed only by a heartbeat at least as new, signed by the
    credential it was first seen with (or, for rows from before signing, by any); returns
    False when another credential claims the node."""
    stmt = insert(Node).values(**values)
    changed = {k: stmt.excluded[k] for k in values if k != "id"}
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Node.id],
            set_=changed,
            where=(Node.last_heartbeat_at <= stmt.excluded.last_heartbeat_at)
            & (
                Node.credential_id.is_(None)
                | (Node.credential_id == stmt.excluded.credential_id)
                | Node.credential_id.in_(
                    select(NodeCredentialRow.id).where(NodeCredentialRow.revoked_at.is_not(None))
                )
            ),
        )
    )
    owner = session.execute(select(Node.credential_id).where(Node.id == values["id"])).scalar()
    return owner == values.get("credential_id")


def list_nodes(session: Session, pool: str | None = None) -> Sequence[Node]:
    """Known node agents, by pool then id."""
    query = select(Node).order_by(Node.pool, Node.id)
    if pool:
        query = query.where(Node.pool == pool)
    return list(session.execute(query).scalars())


# ---------------------------------------------------------------- datasets


def get_dataset(session: Session, dataset_id: str, tenant: str | None = None) -> DatasetRow:
    """The dataset, or NotFound; with ``tenant``, another tenant's dataset is NotFound too."""
    row = session.get(DatasetRow, dataset_id)
    if row is None or (tenant is not None and row.tenant != tenant):
        raise NotFound(f"dataset {dataset_id} not found")
    return row


def list_datasets(
    session: Session, *, limit: int, offset: int, tenant: str | None = None
) -> tuple[Sequence[DatasetRow], int]:
    """A page of datasets (of ``tenant``, or all), newest first, and the count of all."""
    query = select(DatasetRow)
    count = select(func.count()).select_from(DatasetRow)
    if tenant is not None:
        query = query.where(DatasetRow.tenant == tenant)
        count = count.where(DatasetRow.tenant == tenant)
    rows = session.execute(
        query.order_by(DatasetRow.created_at.desc(), DatasetRow.id).limit(limit).offset(offset)
    ).scalars()
    return list(rows), int(session.execute(count).scalar_one())


# ---------------------------------------------------------------- API keys and tenants


def add_api_key(
    session: Session,
    *,
    key_id: str,
    key_hash: str,
    prefix: str,
    tenant: str,
    scopes: list[str],
    name: str = "",
    configured: bool = False,
) -> ApiKey | None:
    """Insert a key (and its tenant, if new); None when a key with that hash exists already.

    ``configured`` marks the configured admin key (see ``lock_configured_admin_key``)."""
    ensure_tenant(session, tenant)
    inserted = session.execute(
        insert(ApiKey)
        .values(
            id=key_id,
            key_hash=key_hash,
            prefix=prefix,
            tenant=tenant,
            scopes=scopes,
            name=name,
            configured=configured,
        )
        .on_conflict_do_nothing(index_elements=[ApiKey.key_hash])
        .returning(ApiKey.id)
    ).scalar_one_or_none()
    if inserted is None:
        return None
    return session.get(ApiKey, inserted)


def key_by_hash(session: Session, key_hash: str) -> ApiKey | None:
    """The unrevoked key with this hash, or None."""
    return session.execute(
        select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    ).scalar_one_or_none()


def api_key_with_hash(session: Session, key_hash: str) -> ApiKey | None:
    """The key with this hash, revoked or not, or None."""
    return session.execute(select(ApiKey).where(ApiKey.key_hash == key_hash)).scalar_one_or_none()


def valid_key_ids(session: Session, key_ids: Sequence[str]) -> set[str]:
    """Those of ``key_ids`` that name an unrevoked key: one primary-key read (``id = ANY``, a
    single array parameter however many ids), for the checks of open gRPC streams."""
    if not key_ids:
        return set()
    ids = bindparam("key_ids", list(key_ids), type_=ARRAY(String))
    query = select(ApiKey.id).where(ApiKey.id == any_(ids), ApiKey.revoked_at.is_(None))
    return set(session.execute(query).scalars())


#: Key of the Postgres advisory lock under which the configured admin key changes ("qorckey1").
CONFIGURED_KEY_LOCK = 0x716F72636B657931


def lock_configured_admin_key(session: Session) -> None:
    """Hold, until the transaction ends, the lock under which the configured admin key changes.

    The configured admin key is the one ``QORCH_ADMIN_KEY`` holds: the API registers it at
    start, ``rotate-admin`` replaces it, and one at a time is valid. API replicas starting at
    once, and a rotation meanwhile, take turns under this lock, so each sees what the one
    before wrote and no two new configured keys stay valid side by side."""
    session.execute(select(func.pg_advisory_xact_lock(CONFIGURED_KEY_LOCK)))


def revoke_configured_admin_keys(
    session: Session, *, now: datetime, keep: str | None = None
) -> list[ApiKey]:
    """Revoke every valid configured admin key but the one with id ``keep``; the keys revoked.

    Keys made through the API (``configured`` false) are never touched. Call it under
    ``lock_configured_admin_key``."""
    query = update(ApiKey).where(ApiKey.configured.is_(True), ApiKey.revoked_at.is_(None))
    if keep is not None:
        query = query.where(ApiKey.id != keep)
    revoked = session.execute(query.values(revoked_at=now).returning(ApiKey)).scalars()
    return list(revoked)


def list_api_keys(session: Session, tenant: str | None = None) -> Sequence[ApiKey]:
    """Keys, revoked ones included, newest first."""
    query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id)
    if tenant is not None:
        query = query.where(ApiKey.tenant == tenant)
    return list(session.execute(query).scalars())


def revoke_api_key(session: Session, key_id: str, *, now: datetime) -> ApiKey:
    """Mark a key revoked (idempotent); NotFound when unknown."""
    key = session.get(ApiKey, key_id, with_for_update=True)
    if key is None:
        raise NotFound(f"key {key_id} not found")
    if key.revoked_at is None:
        key.revoked_at = now
        session.flush()
    return key


def ensure_tenant(session: Session, tenant: str) -> None:
    """Create the tenant's row with default quotas, if it has none."""
    session.execute(insert(Tenant).values(id=tenant).on_conflict_do_nothing())


def lock_tenant(session: Session, tenant: str) -> Tenant:
    """The tenant's row (created if missing), locked until the transaction ends: submissions
    of one tenant check quotas and charge its budget one after another."""
    ensure_tenant(session, tenant)
    return session.execute(select(Tenant).where(Tenant.id == tenant).with_for_update()).scalar_one()


def get_tenant(session: Session, tenant: str) -> Tenant:
    """The tenant, or NotFound."""
    row = session.get(Tenant, tenant)
    if row is None:
        raise NotFound(f"tenant {tenant} not found")
    return row


def active_jobs(session: Session, tenant: str) -> int:
    """Unfinished jobs of the tenant (predictions made by the API excluded)."""
    return int(
        session.execute(
            select(func.count())
            .select_from(Job)
            .where(
                Job.tenant == tenant,
                Job.kind != "predict",
                Job.status.in_(["QUEUED", "RUNNING", "CANCELLING"]),
            )
        ).scalar_one()
    )
