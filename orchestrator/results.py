"""Applying fragment results to jobs: one transaction per result, idempotent.

A fragment's values are stored once, keyed by fragment id; a duplicate, a stale failure, or a
result for a finished job changes nothing. A result counts only when an enrolled, unrevoked
credential of the fragment's pool signed it, answering the nonce of an attempt that was sent.
On a paid pool, what the fragment used (its ``usage``: tasks, shots, prices, cost) is checked
like its values, and its cost is added to the job's actual cost once, with the values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from orchestrator import windows
from orchestrator.fragments import fail_fragment, redispatch, utcnow
from orchestrator.runners import runner_for
from proto.qorch.v1 import fragments_pb2 as pb
from proto.qorch.v1 import signed_pb2
from qorchestra.aggregation import Expected, ResultShapeError, binding_values
from qorchestra.config import Settings
from qorchestra.costs import Price, actual_usd, is_paid, usage_problem
from qorchestra.lifecycle import is_terminal
from qorchestra.signing import Rejected, Rejection
from qorchestra.store import repository as repo
from qorchestra.store.credentials import control_plane_signer, verify_node_message
from qorchestra.store.models import Fragment, Job, JobEventRow

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What applying one result did."""

    kind: str  # counted, duplicate, unknown, late, stale, retried, failed
    events: list[JobEventRow] = field(default_factory=list)
    #: The dispatch loop has work now: the transaction queued outbox messages (a retry, a
    #: training step), or the job has fragments left to write and a slot just freed up.
    dispatch: bool = False
    #: What the counted fragment actually cost: (tenant, pool, USD), for the spend counter
    #: once the transaction committed; None when nothing was spent.
    spend: tuple[str, str, float] | None = None


def apply_signed_result(
    session: Session, envelope: signed_pb2.Signed, settings: Settings
) -> Outcome:
    """Apply one signed FragmentResult inside the caller's transaction; Rejected, before
    anything changed, when its proof fails (signer, signature, pool or nonce)."""
    result, credential = verify_node_message(session, envelope, pb.FragmentResult)
    return apply_result(session, result, settings, credential.pool, envelope.signer)


def apply_result(
    session: Session, result: pb.FragmentResult, settings: Settings, pool: str, signer: str = ""
) -> Outcome:
    """Apply one FragmentResult whose signature verified, by a credential of ``pool``."""
    fragment = repo.lock_fragment(session, result.fragment_id)
    if fragment is None or fragment.job_id != result.job_id:
        logger.warning(
            "result for an unknown fragment ignored",
            extra={"job_id": result.job_id, "fragment_id": result.fragment_id},
        )
        return Outcome("unknown")
    # Only an agent of the fragment's pool answering a dispatch that was sent may speak for it.
    if repo.job_pool(session, fragment.job_id) != pool:
        raise Rejected(Rejection.WRONG_POOL, signer, f"a credential of pool {pool}")
    sent = 1 <= result.attempt <= fragment.attempt
    if not (
        sent and control_plane_signer(session).answers(fragment.id, result.attempt, result.nonce)
    ):
        raise Rejected(Rejection.WRONG_NONCE, signer, f"attempt {result.attempt}")
    if fragment.status in (repo.FragmentStatus.DONE, repo.FragmentStatus.FAILED):
        logger.info(
            "duplicate result dropped",
            extra={"job_id": result.job_id, "fragment_id": result.fragment_id},
        )
        return Outcome("duplicate")
    job = repo.lock_job(session, fragment.job_id)
    outcome = _apply_to_job(session, job, fragment, result, settings)
    windows_left = job.fragments_written < job.fragments_total
    outcome.dispatch = repo.wrote_outbox(session) or (windows_left and not is_terminal(job.status))
    return outcome


def _apply_to_job(
    session: Session, job: Job, fragment: Fragment, result: pb.FragmentResult, settings: Settings
) -> Outcome:
    """Apply a result of one of the job's fragments (both locked) that is not a duplicate."""
    if is_terminal(job.status):
        return Outcome("late")
    runner = runner_for(job)

    if result.WhichOneof("outcome") == "success":
        expected = runner.expected(session, job, fragment)
        try:
            # A result counts only with the shape its fragment asked for and values a run of
            # it can produce; anything else fails this attempt, and the fragment runs again.
            values = binding_values(result.success, expected)
            cost = fragment_cost(session, job, fragment, result, expected, settings)
        except ResultShapeError as exc:  # ResultValueError and UsageError included
            failure = pb.FragmentFailure(
                error=f"malformed result from node {result.node_id}: {exc}",
                error_type="ResultShapeError",
                retryable=True,
            )
            return _apply_failure(session, job, fragment, result.attempt, failure, settings)
        fragment.status = repo.FragmentStatus.DONE
        fragment.result = values
        fragment.done_at = utcnow()
        fragment.node_id = result.node_id
        job.fragments_done += 1
        job.bindings_done += fragment.binding_count
        repo.add_actual_cost(session, job, cost)  # once: a counted fragment is never counted again
        outcome = Outcome("counted", runner.fragment_done(session, job, fragment, result, settings))
        if cost > 0:
            outcome.spend = (job.tenant, job.pool, cost)
        return outcome

    failure = result.failure
    if result.attempt < fragment.attempt:
        return Outcome("stale")  # a newer attempt is already out
    return _apply_failure(session, job, fragment, result.attempt, failure, settings)


class UsageError(ResultShapeError):
    """What a result says its fragment used cannot be true: it fails the attempt's check like
    a forged value."""


def fragment_cost(
    session: Session,
    job: Job,
    fragment: Fragment,
    result: pb.FragmentResult,
    expected: Expected,
    settings: Settings,
) -> float:
    """What the fragment actually cost, from the usage its result reports, checked against
    what it could have used (``costs.usage_problem``): one task per executable (binding x
    run) at most, the fragment's shots for each, priced no higher than the pool's table.
    0 off paid pools. A paid pool's result without usage (an agent that does not report it)
    costs the most the fragment could have: the tenant never pays less than it used.
    UsageError for an impossible report."""
    if not is_paid(job.pool):
        if result.HasField("usage") and result.usage.cost_usd != 0:
            raise UsageError(f"usage cost ${result.usage.cost_usd} on unpaid pool {job.pool}")
        return 0.0
    table = settings.aws_price(job.pool)
    price = Price(table["per_task"], table["per_shot"])
    executables = expected.count * max(1, expected.observables)
    shots = fragment_shots(session, job, fragment)
    if not result.HasField("usage"):
        return actual_usd(executables, executables * shots, price)
    usage = result.usage
    problem = usage_problem(
        tasks=usage.tasks,
        shots=usage.shots,
        cost_usd=usage.cost_usd,
        price_per_task_usd=usage.price_per_task_usd,
        price_per_shot_usd=usage.price_per_shot_usd,
        max_executables=executables,
        shots_per_run=shots,
        table=price,
    )
    if problem is not None:
        raise UsageError(problem)
    return usage.cost_usd


def fragment_shots(session: Session, job: Job, fragment: Fragment) -> int:
    """The shots of each run of the fragment: from its stored message (training steps), else
    from the job's spec head (circuits jobs)."""
    if fragment.payload is not None:
        return pb.Fragment.FromString(fragment.payload).shots
    return windows.cached_head(session, job).spec.shots


def _apply_failure(
    session: Session,
    job: Job,
    fragment: Fragment,
    attempt: int,
    failure: pb.FragmentFailure,
    settings: Settings,
) -> Outcome:
    reason = f"{failure.error_type}: {failure.error}" if failure.error_type else failure.error
    if failure.retryable and fragment.attempt < settings.max_attempts:
        return Outcome("retried", [redispatch(session, job, fragment, reason, settings)])
    return Outcome("failed", [fail_fragment(session, job, fragment, reason, settings)])
