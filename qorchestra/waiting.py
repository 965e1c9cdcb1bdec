"""What a job says while no node agent serves its pool, or none of the pools it names is
online, and which of them it runs on (pure: no I/O).

The orchestrator's pool watch (``orchestrator/pool_watch.py``) marks such a job waiting, and the
API shows the same words in the job's events, in ``GET /v1/jobs/{id}`` and in a submit answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def no_pool_online_warning(pools: Sequence[str]) -> str:
    """The warning of a submission naming several pools, none of which a live agent serves."""
    return (
        f"no node agent serves any of pools {', '.join(pools)} now: the job waits, QUEUED, "
        "until one of them is online"
    )


def no_pool_online_reason(pools: Sequence[str], since: datetime) -> str:
    """Why a job that names several pools waits QUEUED, and since when."""
    return f"waiting: none of pools {', '.join(pools)} is online (since {_clock(since)})"


def gave_up_on_pools_reason(pools: Sequence[str], waited_s: float, max_queue_s: float) -> str:
    """Why a job that names several pools failed after none was online for its
    ``max_queue_s``."""
    return (
        f"waited {waited_s:.0f} s for one of pools {', '.join(pools)} to be online, longer "
        f"than its max_queue_s of {max_queue_s:g} s"
    )


def chosen_pool_reason(pool: str, skipped: Mapping[str, str]) -> str:
    """The event of a job that names several pools, started on ``pool``; ``skipped``: the
    pools before it in its list, and why each was not online."""
    why = "; ".join(f"{name}: {reason}" for name, reason in skipped.items())
    return f"runs on pool {pool}" + (f" (not online: {why})" if why else " (its first choice)")
