"""What a job says while no node agent serves its pool (pure: no I/O).

The orchestrator's pool watch (``orchestrator/pool_watch.py``) marks such a job waiting, and the
API shows the same words in the job's events, in ``GET /v1/jobs/{id}`` and in a submit answer.
"""

from __future__ import annotations

from datetime import UTC, datetime


def _clock(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def waiting_reason(pool: str, since: datetime) -> str:
    """Why a job is not progressing, and since when."""
    return f"waiting: no node agent serves pool {pool} (since {_clock(since)})"


def resumed_reason(pool: str, waited_s: float) -> str:
    """The event of a job whose pool has a live agent again."""
    return f"a node agent serves pool {pool} again, after {waited_s:.0f} s without one"


def gave_up_reason(pool: str, waited_s: float, max_queue_s: float) -> str:
    """Why a job failed after waiting longer than its ``max_queue_s``."""
    return (
        f"waited {waited_s:.0f} s for a node agent of pool {pool}, longer than its "
        f"max_queue_s of {max_queue_s:g} s"
    )


def no_agent_warning(pool: str) -> str:
    """The warning of a submission to a pool that no live agent serves."""
    return (
        f"no node agent serves pool {pool} now: the job waits until one starts "
        f"(enroll one with 'qorch nodes enroll --pool {pool}')"
    )
