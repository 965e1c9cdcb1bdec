"""Training jobs against the store: start a job, and advance it when a step's fragments are in.

Each function runs inside the caller's transaction with the job row locked, so a step's
results, the optimizer step, the checkpoint, the metrics and the next step's fragments (with
their outbox rows) commit together or not at all. A restarted orchestrator therefore finds
either the old step still out (its fragments are answered or dispatched again) or the new one.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime

import numpy as np
from cachetools import LRUCache
from sqlalchemy.orm import Session

from proto.qorch.v1 import fragments_pb2 as pb
from qorchestra.aggregation import Expected
from qorchestra.config import Settings
from qorchestra.cutting.layout import describe_plans, plan_metrics
from qorchestra.jobs.errors import SpecError
from qorchestra.lifecycle import JobStatus
from qorchestra.planning import room
from qorchestra.store import repository as repo
from qorchestra.store.credentials import control_plane_signer
from qorchestra.store.models import (
    Fragment,
    Job,
    JobEventRow,
    JobMetric,
    TrainingCheckpoint,
)
from qorchestra.store.training import parse_spec, setup_for, step_seconds
from qorchestra.training import cut as cutting
from qorchestra.training import fragments as planning
from qorchestra.training import trainer
from qorchestra.training.spec import MinimizeJob, PredictJob, TrainJob

logger = logging.getLogger(__name__)

#: Jobs whose parsed spec and setup are kept between steps (a stored spec never changes).
SETUP_CACHE_SIZE = 16

# Read and filled by the results loop (advance) and the dispatch loop (write_window): each
# access holds the lock; a miss is built outside it (two threads may both build the same
# job's setup from the same stored spec, and either is right).
_lock = threading.Lock()
_setups: LRUCache[str, tuple[TrainJob | MinimizeJob | PredictJob, trainer.Setup]] = LRUCache(
    maxsize=SETUP_CACHE_SIZE
)


def _spec_and_setup(
    session: Session, job: Job, settings: Settings
) -> tuple[TrainJob | MinimizeJob | PredictJob, trainer.Setup]:
    """The job's parsed spec and setup, from a small cache: a step then neither loads the spec
    (``jobs.spec``, deferred) nor rebuilds the model. Raises SpecError as ``setup_for`` does."""
    with _lock:
        found = _setups.get(job.id)
    if found is None:
        spec = parse_spec(job.spec)
        found = (spec, setup_for(session, spec, settings))
        with _lock:
            _setups[job.id] = found
    return found


def forget(job_id: str) -> None:
    """Drop a finished job's cached setup."""
    with _lock:
        _setups.pop(job_id, None)


def begin(session: Session, job: Job, settings: Settings) -> list[JobEventRow]:
    """Start a claimed training job: checkpoint its initial state and plan its first step."""
    try:
        spec, setup = _spec_and_setup(session, job, settings)
    except SpecError as exc:  # e.g. its dataset was deleted since submission
        return [repo.set_status(session, job, JobStatus.FAILED, str(exc), now=_now())]
    if isinstance(spec, PredictJob):
        state: trainer.State = {"step": 0}
        request = trainer.StepRequest(
            "evaluate",
            tuple(range(len(spec.samples))),
            (trainer.gradients.FORWARD,),
            tuple(spec.circuit_parameters),
        )
    else:
        state, request = trainer.start(spec, setup)
    session.add(TrainingCheckpoint(job_id=job.id, step=0, state=state, request=request.to_json()))
    _plan(session, job, spec, setup, request, 0, settings)
    what = {"train": "training", "minimize": "minimisation", "predict": "prediction"}[job.kind]
    message = f"{what} started: {len(setup.model.weight_inputs)} circuit parameters"
    plans = cutting.plans(spec, setup, settings)
    if plans:
        message += "; " + describe_plans(plans)
    metrics = plan_metrics(plans) if plans else None
    return [repo.set_status(session, job, JobStatus.RUNNING, message, now=_now(), metrics=metrics)]


def _runs(
    spec: TrainJob | MinimizeJob | PredictJob, setup: trainer.Setup, settings: Settings
) -> list[cutting.Run | None]:
    """The subexperiments each slice runs as (``[None]``: the model runs whole)."""
    found = cutting.experiment(spec, setup, settings)
    return list(cutting.runs(found)) if found else [None]


def _units(
    spec: TrainJob | MinimizeJob | PredictJob,
    request: trainer.StepRequest,
    runs: list[cutting.Run | None],
    settings: Settings,
) -> list[tuple[planning.Slice, cutting.Run | None]]:
    """A step's fragments in planning order: deterministic, so the rows a step already has
    are the position of its next window."""
    batch = planning.batched(spec.pool, spec.shots)
    parts = planning.slices(request, settings.fragment_bindings, batch)
    return [(part, run) for part in parts for run in runs]


def _plan(
    session: Session,
    job: Job,
    spec: TrainJob | MinimizeJob | PredictJob,
    setup: trainer.Setup,
    request: trainer.StepRequest,
    step: int,
    settings: Settings,
) -> None:
    """Plan a step: count all its fragments, write those the in-flight caps allow now.

    Like a circuits job's (orchestrator/windows.py), a step is written in windows of at most
    ``max_inflight_per_job`` unanswered fragments (and the pool's cap); ``dispatch.top_up``
    writes the rest as results come in, so one job's big step cannot flood the pool's topic
    ahead of other jobs.
    """
    runs = _runs(spec, setup, settings)
    units = _units(spec, request, runs, settings)
    # A step is planned only when the job has none in flight (its start, or every fragment of
    # the step before counted), so only the pool's count is read; before the job's counters
    # change, so they are not flushed just for that read.
    free = room(0, repo.in_flight(session, pool=job.pool), settings)
    job.fragments_total += len(units)
    job.bindings_total += request.circuits * len(runs)
    _write(session, job, spec.shots, setup, request, step, settings, units[:free])


def write_window(session: Session, job: Job, settings: Settings, count: int) -> int:
    """Write up to ``count`` more fragments of the job's step in flight; returns how many.

    Called by ``dispatch.top_up`` with the job locked, within the in-flight caps.
    """
    checkpoint = session.get(TrainingCheckpoint, job.id)
    if checkpoint is None or checkpoint.request is None:
        return 0
    try:
        spec, setup = _spec_and_setup(session, job, settings)
    except SpecError:  # e.g. its dataset was deleted; the step's deadline fails the job
        return 0
    request = trainer.StepRequest.from_json(checkpoint.request)
    units = _units(spec, request, _runs(spec, setup, settings), settings)
    written = repo.count_step_fragments(session, job.id, checkpoint.step)
    return _write(
        session,
        job,
        spec.shots,
        setup,
        request,
        checkpoint.step,
        settings,
        units[written : written + count],
    )


def _write(
    session: Session,
    job: Job,
    shots: int,
    setup: trainer.Setup,
    request: trainer.StepRequest,
    step: int,
    settings: Settings,
    units: list[tuple[planning.Slice, cutting.Run | None]],
) -> int:
    """Fragment rows and outbox messages for ``units`` of a step (already counted in the job's
    ``fragments_total``)."""
    if not units:
        return 0
    fragments = []
    for part, run in units:
        fid = str(uuid.uuid4())
        message = planning.build_fragment(
            setup,
            request,
            part,
            job_id=job.id,
            fragment_id=fid,
            pool=job.pool,
            shots=shots,
            step=step,
        )
        if run is not None:  # a cut model: program_index = the subexperiment
            cutting.retarget(message, run)
        fragments.append(
            repo.NewFragment(
                id=fid,
                program_index=step if run is None else run.index,
                binding_offset=part.offset,
                binding_count=part.bindings,
                payload=message.SerializeToString(),
                step=step,
                keep_payload=True,
            )
        )
    # add_fragments counts what it writes; the step was counted whole already (_plan), so take
    # them off first: the job's row is then updated once, with the right total
    job.fragments_total -= len(fragments)
    repo.add_fragments(
        session, job, fragments, settings.fragments_topic(job.pool), control_plane_signer(session)
    )
    return len(fragments)


def advance(session: Session, job: Job, settings: Settings) -> list[JobEventRow]:
    """Every fragment of the current step is in: step the optimizer, record, plan the next.

    Called by the aggregator inside the transaction that counted the step's last fragment.
    """
    checkpoint = session.get(TrainingCheckpoint, job.id, with_for_update=True)
    if checkpoint is None or checkpoint.request is None:
        return [repo.set_status(session, job, JobStatus.FAILED, "training state lost", now=_now())]
    spec, setup = _spec_and_setup(session, job, settings)
    request = trainer.StepRequest.from_json(checkpoint.request)
    elapsed = step_seconds(session, job.id)
    done = repo.step_fragments(session, job.id, checkpoint.step)
    found = cutting.experiment(spec, setup, settings)
    if found is not None:  # knit each readout back from the subexperiments
        answers = [cutting.Answer(f.program_index, f.binding_offset, f.result or []) for f in done]
        readouts = cutting.readouts(found, request, answers)
    else:
        rows = [value for f in done for value in f.result or []]
        readouts = np.asarray(rows, dtype=float).reshape(request.circuits, len(setup.observables))

    if isinstance(spec, PredictJob):
        job.result = {"predictions": trainer.predictions(spec.model, readouts)}
        checkpoint.request = None
        forget(job.id)
        return [
            repo.set_status(
                session,
                job,
                JobStatus.SUCCEEDED,
                f"{len(spec.samples)} samples classified",
                now=_now(),
            )
        ]

    outcome = trainer.advance(spec, setup, checkpoint.state, request, readouts)
    if request.kind == "gradient":  # its one metrics row is the step's; never part of the state
        outcome.metrics[0]["step_time_s"] = elapsed
    events = [_record(session, job, values) for values in outcome.metrics]
    checkpoint.state = outcome.state
    if outcome.request is None:
        checkpoint.request = None
        plans = cutting.plans(spec, setup, settings)
        job.result = {**(outcome.result or {}), **({"cutting": plans} if plans else {})}
        summary = ", ".join(
            f"{k} {v:.4g}" for k, v in outcome.metrics[-1].items() if k not in ("step", "epoch")
        )
        reason = (outcome.result or {}).get("stop_reason")
        if reason:
            summary += f"; early stopping: {reason}"
        events.append(repo.set_status(session, job, JobStatus.SUCCEEDED, summary, now=_now()))
        logger.info("training finished", extra={"job_id": job.id, "steps": outcome.state["step"]})
        forget(job.id)
        return events
    checkpoint.step += 1
    checkpoint.request = outcome.request.to_json()
    _plan(session, job, spec, setup, outcome.request, checkpoint.step, settings)
    return events


def _record(session: Session, job: Job, values: dict[str, float]) -> JobEventRow:
    """A metrics row and the event that streams it to watchers."""
    if "val_loss" in values or "train_loss" in values:
        kind = "epoch"
        message = f"epoch {int(values['epoch'])}: " + ", ".join(
            f"{k} {v:.4f}" for k, v in values.items() if k not in ("epoch", "step")
        )
    elif "final_energy" in values:
        kind, message = "final", f"final energy {values['final_energy']:.6f}"
    else:
        kind = "step"
        message = f"step {int(values['step'])}: loss {values['loss']:.6f}"
        if "step_time_s" in values:
            message += f" in {values['step_time_s']:.2f} s"
    session.add(
        JobMetric(
            job_id=job.id,
            kind=kind,
            step=int(values.get("step", 0)),
            epoch=int(values.get("epoch", 0)),
            values=values,
        )
    )
    return repo.append_event(session, job, kind, message, metrics=values)


def _now() -> datetime:
    return datetime.now(UTC)


class StepRunner:
    """A training kind's job in the orchestrator: one optimizer step at a time (see
    :class:`orchestrator.runners.JobRunner`)."""

    def begin(self, session: Session, job: Job, settings: Settings) -> list[JobEventRow]:
        """Checkpoint the initial state and plan the first step."""
        return begin(session, job, settings)

    def write_window(self, session: Session, job: Job, settings: Settings, count: int) -> int:
        """Write more of the step in flight."""
        return write_window(session, job, settings, count)

    def expected(self, session: Session, job: Job, fragment: Fragment) -> Expected:
        """Expectation values in [-1, 1], one per observable the fragment asked for (a cut
        model's fragments ask for their own, read from the fragment as it was dispatched).
        Training results are always expectations: neither shots nor widths matter."""
        if fragment.payload is None:
            observables = job.observables
        else:
            observables = cutting.observable_count(fragment.payload)
        return Expected(fragment.binding_count, job.result_type, observables)

    def fragment_done(
        self,
        session: Session,
        job: Job,
        fragment: Fragment,
        result: pb.FragmentResult,
        settings: Settings,
    ) -> list[JobEventRow]:
        """Nothing until the step's last fragment; then the optimizer steps (training jobs
        report per step and per epoch, not per fragment)."""
        if job.fragments_done < job.fragments_total:
            return []
        return advance(session, job, settings)
