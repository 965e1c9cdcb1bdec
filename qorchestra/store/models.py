"""ORM models. Alembic migrations in ``migrations/`` are the only way the schema changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Job(Base):
    """A submitted job: its spec, state, progress counters and, once done, its result."""

    __tablename__ = "jobs"
    __table_args__ = (
        # One job per key and tenant: a submission retried with its Idempotency-Key finds the
        # job the first one stored, and two sent at once cannot both store one.
        Index(
            "uq_jobs_tenant_idempotency_key",
            "tenant",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    #: The tenant whose key submitted it; only that tenant (and admins) can see it.
    tenant: Mapped[str] = mapped_column(String(64), index=True, server_default="default")
    name: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(32))
    #: The pool its fragments go to: the one it names, or of the ``pools`` it names, the one
    #: the orchestrator started it on.
    pool: Mapped[str] = mapped_column(String(64))
    #: The pools it may run on, in order of preference, when it names several (None: one).
    pools: Mapped[list[str] | None] = mapped_column(JSONB(none_as_null=True), default=None)
    status: Mapped[str] = mapped_column(String(16), index=True)
    #: Estimated cost on a paid pool (aws-*, emu-*), charged to the tenant's budget at submission.
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    #: What its quantum tasks actually cost, as agents reported it: the sum over its counted
    #: fragments, each once. When the job ends, the tenant is given back ``cost_usd`` less this.
    actual_cost_usd: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # The spec can be large (every binding); it is loaded only when asked for.
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB, deferred=True)
    result_type: Mapped[str] = mapped_column(String(16))
    observables: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB, default=None, deferred=True)
    fragments_total: Mapped[int] = mapped_column(Integer, default=0)
    #: Fragment rows written so far: the position of the job's next window. A job with fewer
    #: than ``fragments_total`` still has fragments to write (``repository.add_fragments``).
    fragments_written: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    fragments_done: Mapped[int] = mapped_column(Integer, default=0)
    bindings_total: Mapped[int] = mapped_column(Integer, default=0)
    bindings_done: Mapped[int] = mapped_column(Integer, default=0)
    redispatches: Mapped[int] = mapped_column(Integer, default=0)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    #: Since when no live node agent serves the job's pool (None: one does, or it is not
    #: running); set and cleared by the orchestrator's pool watch.
    waiting_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    #: Fail the job once it has waited this long for an agent (None: wait for ever).
    max_queue_s: Mapped[float | None] = mapped_column(Float, default=None)
    #: The submission's ``Idempotency-Key`` header (None: sent without one).
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    #: sha256 of the submitted body (``api.use_cases.request_digest``), stored with a key: a
    #: repeat with the same key must carry the same body.
    request_digest: Mapped[str | None] = mapped_column(String(64), default=None)


class Fragment(Base):
    """A slice of one program's bindings, dispatched to a pool as one unit of work."""

    __tablename__ = "fragments"
    __table_args__ = (
        Index("ix_fragments_job_order", "job_id", "program_index", "binding_offset"),
        Index("ix_fragments_deadline", "status", "deadline_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    program_index: Mapped[int] = mapped_column(Integer)
    binding_offset: Mapped[int] = mapped_column(Integer)
    binding_count: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # pending, dispatched, done, failed
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    node_id: Mapped[str | None] = mapped_column(String(200), default=None)
    result: Mapped[list[Any] | None] = mapped_column(JSONB, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    #: Training step the fragment belongs to (0 for circuits jobs).
    step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: The serialized Fragment message, for fragments not rebuilt from the job's spec (training).
    payload: Mapped[bytes | None] = mapped_column(LargeBinary, default=None, deferred=True)


class QuantumTaskRow(Base):
    """A paid quantum task (a Braket task) that an agent reported for one of a fragment's
    attempts, before it waited on it (``FragmentSubmitted``; docs/qpu.md).

    The next dispatch of the fragment carries the latest task of each ``task_index``, so the
    next agent resumes it instead of paying for it again. ``cancel_wanted_at`` is set when the
    job ends unfinished (cancelled or failed) while the task may still run;
    ``cancel_sent_at`` once the orchestrator has queued the pool's ``CancelTasks`` for it.
    """

    __tablename__ = "quantum_tasks"
    __table_args__ = (
        Index("ix_quantum_tasks_fragment", "fragment_id", "task_index"),
        Index("ix_quantum_tasks_job", "job_id"),
        Index("ix_quantum_tasks_reported", "reported_at"),
        Index(
            "ix_quantum_tasks_cancel_wanted",
            "cancel_wanted_at",
            postgresql_where=text("cancel_wanted_at IS NOT NULL AND cancel_sent_at IS NULL"),
        ),
    )

    arn: Mapped[str] = mapped_column(String(256), primary_key=True)
    fragment_id: Mapped[str] = mapped_column(ForeignKey("fragments.id", ondelete="CASCADE"))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    #: The task's position in the fragment's plan of tasks.
    task_index: Mapped[int] = mapped_column(Integer)
    #: The generation of its client token: 1 for the first task of the index, one more for
    #: each replacement of a cancelled one (``nodes.executors.submission.client_token``).
    generation: Mapped[int] = mapped_column(Integer)
    #: The attempt of the fragment whose report recorded it first.
    attempt: Mapped[int] = mapped_column(Integer)
    client_token: Mapped[str] = mapped_column(String(64))
    device_arn: Mapped[str] = mapped_column(String(256))
    #: The state the last report saw (QUEUED, RUNNING, COMPLETED, ...; empty before a poll).
    status: Mapped[str] = mapped_column(String(16), default="")
    #: The node that reported it last, and the attempt it was working for then.
    node_id: Mapped[str] = mapped_column(String(200), default="")
    reported_attempt: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    cancel_wanted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    cancel_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class OutboxMessage(Base):
    """A Kafka message written in the same transaction as the state it announces.

    The relay publishes rows in id order and deletes them once the broker acknowledged.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(255))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    job_id: Mapped[str | None] = mapped_column(String(36), index=True, default=None)
    fragment_id: Mapped[str | None] = mapped_column(String(36), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class JobEventRow(Base):
    """One step of a job's history; ``seq`` counts from 1 per job."""

    __tablename__ = "job_events"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    fragments_done: Mapped[int] = mapped_column(Integer, default=0)
    fragments_total: Mapped[int] = mapped_column(Integer, default=0)
    bindings_done: Mapped[int] = mapped_column(Integer, default=0)
    bindings_total: Mapped[int] = mapped_column(Integer, default=0)
    metrics: Mapped[dict[str, float]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Node(Base):
    """A node agent as last seen through its heartbeats."""

    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    pool: Mapped[str] = mapped_column(String(64), index=True)
    backend: Mapped[str] = mapped_column(String(255), default="")
    hostname: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    last_heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    fragments_done: Mapped[int] = mapped_column(BigInteger, default=0)
    fragments_failed: Mapped[int] = mapped_column(BigInteger, default=0)
    bindings_done: Mapped[int] = mapped_column(BigInteger, default=0)
    #: The node credential that signed its heartbeats: no other credential may speak for it.
    credential_id: Mapped[str | None] = mapped_column(String(32), default=None)
    #: What its device said of itself in the latest heartbeat: status, queue depth, execution
    #: windows (``qorchestra.device_status.device_row``); None for the local simulators.
    device: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True), default=None)


class NodeCredentialRow(Base):
    """An enrolled node credential: the public half of an agent's Ed25519 key, for one pool."""

    __tablename__ = "node_credentials"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    pool: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class ControlPlaneKey(Base):
    """The secret the control plane signs events and makes dispatch nonces with."""

    __tablename__ = "control_plane_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TrainingCheckpoint(Base):
    """The latest state of a training or minimisation job, written with every step.

    ``state`` is the optimisation state (weights, optimizer state, counters), ``request`` the
    step whose fragments are out now; together they are all a restarted orchestrator needs.
    """

    __tablename__ = "training_checkpoints"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer)
    state: Mapped[dict[str, Any]] = mapped_column(JSONB)
    request: Mapped[dict[str, Any] | None] = mapped_column(JSONB, default=None)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class JobMetric(Base):
    """One step or epoch of a training job's history (loss, accuracy, gradient norm, ...)."""

    __tablename__ = "job_metrics"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # step, epoch, final
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    values: Mapped[dict[str, float]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DatasetRow(Base):
    """A dataset uploaded as CSV: numeric features and class labels."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True, server_default="default")
    name: Mapped[str] = mapped_column(String(200), default="")
    rows: Mapped[int] = mapped_column(Integer)
    feature_names: Mapped[list[str]] = mapped_column(JSONB)
    classes: Mapped[list[str]] = mapped_column(JSONB)
    features: Mapped[list[list[float]]] = mapped_column(JSONB, deferred=True)
    labels: Mapped[list[int]] = mapped_column(JSONB, deferred=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiKey(Base):
    """An API key: only its SHA-256 is kept, and its first characters for people to tell it."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    scopes: Mapped[list[str]] = mapped_column(JSONB)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    #: The configured admin key (``QORCH_ADMIN_KEY``, or one made by ``rotate-admin``): one
    #: at a time is valid. Keys made through ``POST /v1/keys`` are not.
    configured: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Tenant(Base):
    """A tenant's quotas (None = the configured default) and what it spent on paid pools: the
    estimates of its unfinished jobs plus the actual cost of its finished ones."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    max_concurrent_jobs: Mapped[int | None] = mapped_column(Integer, default=None)
    max_circuits_per_job: Mapped[int | None] = mapped_column(Integer, default=None)
    max_shots_per_job: Mapped[int | None] = mapped_column(BigInteger, default=None)
    submit_rate_per_s: Mapped[float | None] = mapped_column(Float, default=None)
    budget_usd: Mapped[float | None] = mapped_column(Float, default=None)
    spent_usd: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
