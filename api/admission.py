"""Admission of a submitted job: rate limit, pool, program screening, tenant quotas and cost caps.

``screen`` runs before validation (cheap refusals first, and no program reaches Braket's
parser in this process before it parsed within the time bound in the sandbox); it refuses a pool
nobody declared, enrolled or served, and warns of one that no live agent serves. ``plan_pools``
validates the job on every pool it names and keeps those whose estimate fits its cap. ``admit`` runs
inside the transaction that stores the jobs, for one submission or a batch of one tenant's
(``api/use_cases.py``): it locks the tenant's row, so the concurrency quota and the budget hold
under concurrent submissions, and charges the estimates to the tenant.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cachetools import TTLCache
from sqlalchemy.orm import Session

from api.auth import Principal
from api.ratelimit import RateLimiter
from api.sandbox import BudgetSpent, ProgramSandbox, WorkersBusy
from qorchestra.config import Settings
from qorchestra.costs import Price, estimate_usd, is_paid
from qorchestra.devices import DeviceProfile
from qorchestra.jobs.errors import FieldError, SpecError
from qorchestra.jobs.kind import DatasetLookup, Location, Prepared
from qorchestra.jobs.kinds import AnyJob, job_kind
from qorchestra.program_text import nesting_depth
from qorchestra.qasm import ProgramError
from qorchestra.store import repository as repo
from qorchestra.store.models import Tenant
from qorchestra.store.pools import PoolPresence, pool_presence
from qorchestra.waiting import no_agent_warning, no_pool_online_warning


class TooManyRequests(Exception):
    """Answered 429 with ``Retry-After``: the tenant submits too fast or runs too many jobs."""

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class ParsersBusy(TooManyRequests):
    """No program parser came free in time: the shared parse workers are busy (another tenant
    cannot hold them all, but they can all be taken). Answered 503 with ``Retry-After``
    (``api/errors.py``)."""


class CostError(SpecError):
    """Answered 422 with the estimate: the job would cost more than allowed."""

    def __init__(self, errors: list[FieldError], estimate_usd: float) -> None:
        super().__init__(errors)
        self.estimate_usd = estimate_usd


@dataclass(frozen=True)
class Quotas:
    """A tenant's limits: its own where an admin set them, else the configured defaults."""

    max_concurrent_jobs: int
    max_circuits_per_job: int
    max_shots_per_job: int
    submit_rate_per_s: float
    submit_burst: int
    budget_usd: float

    @classmethod
    def of(cls, tenant: Tenant | None, settings: Settings) -> Quotas:
        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        t = tenant
        return cls(
            max_concurrent_jobs=pick(
                t and t.max_concurrent_jobs, settings.tenant_max_concurrent_jobs
            ),
            max_circuits_per_job=pick(
                t and t.max_circuits_per_job, settings.tenant_max_circuits_per_job
            ),
            max_shots_per_job=pick(t and t.max_shots_per_job, settings.tenant_max_shots_per_job),
            submit_rate_per_s=pick(t and t.submit_rate_per_s, settings.tenant_submit_rate_per_s),
            submit_burst=settings.tenant_submit_burst,
            budget_usd=pick(t and t.budget_usd, settings.tenant_budget_usd),
        )


def rate_limit(
    principal: Principal, session: Session, settings: Settings, limiter: RateLimiter
) -> None:
    """429 (TooManyRequests) when the tenant submits faster than its rate; admins are not
    limited."""
    if principal.is_admin:
        return

    def rate() -> tuple[float, int]:
        quotas = Quotas.of(session.get(Tenant, principal.tenant), settings)
        session.rollback()
        return quotas.submit_rate_per_s, quotas.submit_burst

    wait = limiter.take(principal.tenant, rate)
    if wait > 0:
        raise TooManyRequests(
            f"tenant {principal.tenant} submits faster than its quota submit_rate_per_s allows",
            wait,
        )


class PoolLookup:
    """Whether a pool is known, and whether a live agent serves it, as submissions ask: a
    pool the settings declare, or the store knows (``pool_presence``), stays known for the
    process's life, since a credential or an agent, once seen, is never forgotten; whether a
    live agent serves it is kept ``live_ttl_s``, so that under load the store is asked about
    once a second per pool, not once per submission (a warning may lag an agent's start or end
    by that much). An unknown pool is asked about every time, so it is known as soon as it is
    enrolled, and only known pools are kept. One lookup at a time: callers that miss together
    wait for it, and then find its answer.

    Owned by the API app (``app.state.pools``); thread-safe."""

    def __init__(
        self,
        live_ttl_s: float = 1.0,
        max_pools: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()  # guards the two caches
        self._lookup = threading.Lock()  # one store lookup at a time
        self._known: set[str] = set()
        self._live: TTLCache[str, bool] = TTLCache(maxsize=max_pools, ttl=live_ttl_s, timer=clock)

    def _cached(self, pool: str) -> PoolPresence | None:
        with self._lock:
            if pool not in self._known:
                return None
            live = self._live.get(pool)
        return None if live is None else PoolPresence(known=True, live=live)

    def presence(self, session: Session, settings: Settings, pool: str) -> PoolPresence:
        """What submissions need to know of ``pool``: when it is not kept, looked up in
        ``session``, whose transaction then ends (no transaction, nor connection, is held
        while the submission's programs parse)."""
        if (kept := self._cached(pool)) is not None:
            return kept
        with self._lookup:
            if (kept := self._cached(pool)) is not None:
                return kept  # looked up meanwhile by the caller this one waited for
            since = datetime.now(UTC) - timedelta(seconds=settings.node_offline_after_s)
            found = pool_presence(session, pool, since)
            session.rollback()
            declared = pool in settings.declared_pools()  # read only here: it may list files
            with self._lock:
                known = declared or found.known or pool in self._known
                if known:
                    self._known.add(pool)
                    self._live[pool] = found.live
            return PoolPresence(known=known, live=found.live)


def unknown_pool_reason(pool: str) -> str:
    """Why a job on a pool nobody declared, enrolled or served is refused, and what makes it
    known."""
    return (
        f"unknown pool {pool!r}: no setting declares it, no node credential was ever enrolled "
        "for it and no node agent has served it; an operator declares it in "
        f'QORCH_POOL_MAX_QUBITS with its qubit limit (e.g. {{"{pool}": 20}}; '
        "QORCH_AWS_DEVICES for an aws-* pool) or enrolls an agent for it with "
        f"'qorch nodes enroll --pool {pool}'"
    )


def pool_location(job: AnyJob, index: int) -> Location:
    """Where the job's ``index``-th pool stands in the request: ``pool`` itself when it names
    one, ``pool[index]`` when it names a list."""
    return ("pool",) if len(job.pools) == 1 else ("pool", index)


def check_pool(
    job: AnyJob, settings: Settings, session: Session, pools: PoolLookup
) -> tuple[list[FieldError], list[str]]:
    """The refusal of a job on an unknown pool (422 naming ``pool``, or ``pool[i]`` in a
    list), or else the warning of a job whose pools no live agent serves now (it is stored,
    and waits for one)."""
    errors: list[FieldError] = []
    live = False
    for index, name in enumerate(job.pools):
        presence = pools.presence(session, settings, name)
        if not presence.known:
            errors.append(FieldError(pool_location(job, index), unknown_pool_reason(name)))
        live = live or presence.live
    if errors or live:
        return errors, []
    if len(job.pools) == 1:
        return [], [no_agent_warning(job.pool)]
    return [], [no_pool_online_warning(job.pools)]


def screen(
    job: AnyJob,
    principal: Principal,
    settings: Settings,
    sandbox: ProgramSandbox,
    limiter: RateLimiter,
    session: Session,
    pools: PoolLookup,
) -> list[str]:
    """Refuse early: 429 past the tenant's submission rate; 422 for a pool nobody declared,
    enrolled or served (``check_pool``); 422 for a program that is too long, nested too deep,
    or does not parse within the time bound, or, on each emulated pool it names
    (``emu-<profile>``), that the device's emulator refuses as a node agent of the pool would
    (a gate that is not native, two qubits without a coupler, too many qubits: the emulator's
    message); 422 for a dataset the tenant does not own (as for one that does not exist).
    Returns the submission's warnings: that no live agent serves its pools now.

    The programs' parses (and the emulator's checks, in the same parse worker) share one
    budget (``parse_budget_s``, waits for a worker included; programs parsed before for the
    same device cost nothing): the program that was parsing when it ran out is
    refused (422) and the rest are not parsed. A program that finds no free parser within
    ``parse_wait_s`` (or before the budget runs out) is no fault of the program: ParsersBusy,
    meant to be answered 503 with Retry-After."""
    rate_limit(principal, session, settings, limiter)
    errors, warnings = check_pool(job, settings, session, pools)
    kind = job_kind(job.kind)
    # Every emulated device among its pools checks the programs (None: a plain parse).
    devices = [settings.emulated_profile(name) for name in job.pools]
    checks: list[DeviceProfile | None] = [d for d in devices if d is not None] or [None]
    deadline = time.monotonic() + settings.parse_budget_s
    for loc, source in kind.programs(job):
        if len(source) > settings.max_program_chars:
            errors.append(FieldError(loc, f"longer than {settings.max_program_chars} chars"))
        elif nesting_depth(source) > settings.max_program_nesting:
            errors.append(FieldError(loc, f"nested deeper than {settings.max_program_nesting}"))
        else:
            try:
                for device in checks:
                    sandbox.analyze(
                        source,
                        tenant=principal.tenant,
                        deadline=deadline,
                        wait_s=settings.parse_wait_s,
                        tenant_workers=settings.parse_tenant_workers,
                        device=device,
                    )
            except BudgetSpent as exc:
                errors.append(FieldError(loc, str(exc)))
                break
            except ProgramError as exc:
                errors.append(FieldError(loc, str(exc)))
            except WorkersBusy as exc:
                raise ParsersBusy(exc.detail, exc.retry_after) from exc
    dataset_id = kind.dataset_id(job)
    if dataset_id is not None:
        try:
            repo.get_dataset(session, dataset_id, principal.tenant_filter)
        except repo.NotFound as exc:
            errors.append(FieldError(("data", "dataset_id"), str(exc)))
        session.rollback()
    if errors:
        raise SpecError(errors)
    return warnings


def check_size(tenant: str, quotas: Quotas, tasks: int, shots: int, size_field: Location) -> None:
    """422 when a job of ``tasks`` circuit runs of ``shots`` shots each is over the tenant's
    circuits-per-job or shots-per-job quota (the same for every kind of job)."""
    errors: list[FieldError] = []
    if tasks > quotas.max_circuits_per_job:
        errors.append(
            FieldError(
                size_field,
                f"{tasks} circuit runs; tenant {tenant} may run {quotas.max_circuits_per_job} "
                "per job",
            )
        )
    if tasks * shots > quotas.max_shots_per_job:
        errors.append(
            FieldError(
                ("shots",),
                f"{tasks * shots} shots in all; tenant {tenant} may use "
                f"{quotas.max_shots_per_job} per job",
            )
        )
    if errors:
        raise SpecError(errors)


def estimate(job: AnyJob, settings: Settings, prepared: Prepared, pool: str = "") -> float:
    """The job's cost estimate in USD on ``pool`` (default: its first), from the price table
    (0 off paid pools): what ``admit`` charges the tenant and what the stored job keeps as
    ``cost_usd``. Every executable's shots, and a task fee for each executable, or for each
    task the device's program sets make where its limits are configured
    (``prepared.program_set_tasks``, as prepared on that pool): an upper bound of what the
    job's tasks will actually cost."""
    pool = pool or job.pool
    if not is_paid(pool):
        return 0.0
    price = settings.aws_price(pool)
    return estimate_usd(
        prepared.tasks,
        job.shots,
        Price(price["per_task"], price["per_shot"]),
        tasks=prepared.program_set_tasks,
    )


@dataclass(frozen=True)
class PoolPlan:
    """A job validated on every pool it names (``plan_pools``)."""

    #: What is stored with it, as prepared on its first pool (cutting settled there).
    prepared: Prepared
    #: The pools it may run on, in its order: those whose estimate fits its cap.
    pools: tuple[str, ...]
    #: What the tenant is charged: the largest estimate of those pools (an upper bound of
    #: what it costs wherever it runs); the tenant pays the actual when the job ends.
    cost: float
    #: The pools left out because their estimate exceeds the cap, said to the submitter.
    warnings: list[str]


def plan_pools(job: AnyJob, settings: Settings, datasets: DatasetLookup) -> PoolPlan:
    """Validate ``job`` (its kind's ``prepare``) on every pool it names: a job that may run on
    any of them must be valid on each. It is settled (what is stored: cutting, at the pool's
    qubit limit) on the pool of the fewest qubits, the first of those in its order, so that
    what is stored fits every pool; then it is checked on each other pool as settled. A
    refusal on another pool than the first says which (its errors about the pool itself stand
    at ``pool[i]``). Of several pools, those whose estimate exceeds ``max_cost_usd`` are left
    out, with a warning; when none is left (or a paid one lacks a cap) the cap check of
    ``admit`` refuses the job as for one pool. Raises SpecError naming every field at fault."""
    kind = job_kind(job.kind)
    if len(job.pools) == 1:
        alone = kind.prepare(job, settings, datasets)
        return PoolPlan(alone, tuple(job.pools), estimate(job, settings, alone), [])
    narrowest = min(range(len(job.pools)), key=lambda i: settings.max_qubits(job.pools[i]))
    order = [narrowest, *(i for i in range(len(job.pools)) if i != narrowest)]
    costs: dict[str, float] = {}
    errors: list[FieldError] = []
    prepared: Prepared | None = None
    settled = job
    for index in order:
        name = job.pools[index]
        # Shallow: preparing settles top-level fields only (cutting), and a deep copy of a
        # large job's bindings would cost more than the whole check.
        on_pool = job.model_copy(update={"pools": [name]})
        if prepared is not None:
            on_pool.cutting = settled.cutting
        try:
            made = kind.prepare(on_pool, settings, datasets)
        except SpecError as exc:
            errors.extend(_on_pool(exc.errors, index, name))
            if prepared is None:  # not settled: the others cannot be checked against it
                raise SpecError(errors) from None
            continue
        if prepared is None:
            prepared, settled = made, on_pool
        elif on_pool.cutting != settled.cutting:
            errors.append(
                FieldError(
                    ("pool", index),
                    f"pool {name} would cut the job otherwise than "
                    f"pool {job.pools[narrowest]}, where it is settled: {on_pool.cutting} "
                    f"instead of {settled.cutting}",
                )
            )
            continue
        costs[name] = estimate(on_pool, settings, made)
    if errors or prepared is None:
        raise SpecError(errors)
    job.cutting = settled.cutting  # what is stored
    cap = job.max_cost_usd
    if cap is None:  # admit refuses it when one of them is paid: a paid pool needs a cap
        return PoolPlan(prepared, tuple(job.pools), max(costs.values()), [])
    fits = [name for name in job.pools if costs[name] <= cap]
    if not fits:  # admit refuses it, naming the cheapest pool's estimate
        cheapest = min(job.pools, key=lambda name: costs[name])
        return PoolPlan(prepared, (cheapest,), costs[cheapest], [])
    warnings = [
        f"pool {name} left out: its estimate ${costs[name]:.2f} exceeds max_cost_usd ${cap:.2f}"
        for name in job.pools
        if name not in fits
    ]
    return PoolPlan(prepared, tuple(fits), max(costs[name] for name in fits), warnings)


def _on_pool(errors: Sequence[FieldError], index: int, name: str) -> list[FieldError]:
    """The errors of a job checked on its ``index``-th pool ``name``: those about the pool
    itself at ``pool[index]``, the others saying which pool."""
    return [
        FieldError(("pool", index), e.msg)
        if e.loc == ("pool",)
        else FieldError(e.loc, f"on pool {name}: {e.msg}")
        for e in errors
    ]


@dataclass(frozen=True)
class Candidate:
    """A screened, prepared submission waiting for admission: who submits what, its cost
    (``estimate``), and the pools it may run on (``PoolPlan.pools``; empty: the job's own)."""

    principal: Principal
    job: AnyJob
    prepared: Prepared
    cost: float
    pools: tuple[str, ...] = ()


def admit(
    session: Session,
    tenant_id: str,
    settings: Settings,
    candidates: Sequence[Candidate],
    stored: int = 0,
) -> list[SpecError | TooManyRequests | None]:
    """Check submissions of tenant ``tenant_id``, in order, against the tenant's quotas and
    budget inside one transaction, and charge the admitted ones' costs to the tenant: None for
    each one admitted, its refusal (SpecError, CostError: 422; TooManyRequests: 429) for each
    one refused. The admitted jobs are stored in the same transaction: before (``stored``:
    how many of them this transaction stored already, all of them; call it as late as
    possible then) or after, only those admitted.

    It locks the tenant's row until the transaction ends, so the quotas and the budget hold
    under concurrent submissions (of other API processes too): the tenant's unfinished jobs
    are counted once, and every one admitted before counts against the next."""
    tenant = repo.lock_tenant(session, tenant_id)
    quotas = Quotas.of(tenant, settings)
    active = 0
    if any(not c.principal.is_admin for c in candidates):
        active = repo.active_jobs(session, tenant_id) - stored
    outcomes: list[SpecError | TooManyRequests | None] = []
    charged = False
    for c in candidates:
        try:
            _check(c, tenant_id, quotas, active, quotas.budget_usd - tenant.spent_usd)
        except (SpecError, TooManyRequests) as refusal:
            outcomes.append(refusal)
            continue
        outcomes.append(None)
        active += 1
        if c.cost:
            tenant.spent_usd += c.cost
            charged = True
    if charged:
        session.flush()
    return outcomes


def _check(c: Candidate, tenant_id: str, quotas: Quotas, active: int, remaining: float) -> None:
    """Raise the refusal of one candidate: 422 past the size quotas, 429 past the unfinished
    jobs (``active`` of them), 422 without a cap on a paid pool or past the cap or the
    ``remaining`` budget."""
    job, cost = c.job, c.cost
    if not c.principal.is_admin:
        tasks = c.prepared.tasks  # every kind: a training job's, to its last step
        check_size(tenant_id, quotas, tasks, job.shots, job_kind(job.kind).size_field)
        if active >= quotas.max_concurrent_jobs:
            raise TooManyRequests(
                f"tenant {tenant_id} has {active} unfinished jobs; at most "
                f"{quotas.max_concurrent_jobs}",
                5.0,
            )
    paid = [name for name in (c.pools or job.pools) if is_paid(name)]
    if not paid:
        return
    cap = job.max_cost_usd
    if cap is None:
        raise CostError(
            [FieldError(("max_cost_usd",), f"required on {paid[0]}; estimate ${cost:.2f}")],
            cost,
        )
    if cost > cap:
        raise CostError(
            [FieldError(("max_cost_usd",), f"estimate ${cost:.2f} exceeds the cap ${cap:.2f}")],
            cost,
        )
    if cost > remaining:
        raise CostError(
            [
                FieldError(
                    ("max_cost_usd",),
                    f"estimate ${cost:.2f} exceeds tenant {tenant_id}'s remaining "
                    f"budget ${max(0.0, remaining):.2f}",
                )
            ],
            cost,
        )


def admit_prediction(
    session: Session,
    principal: Principal,
    tenant_id: str,
    pool: str,
    shots: int,
    circuits: int,
    settings: Settings,
) -> float:
    """Check a prediction against the model's tenant's quotas (for a caller that is not an
    admin) and charge it on a paid pool; 422 past a quota or the remaining budget."""
    tenant = repo.lock_tenant(session, tenant_id)
    quotas = Quotas.of(tenant, settings)
    if not principal.is_admin:
        check_size(tenant_id, quotas, circuits, shots, job_kind("predict").size_field)
    if not is_paid(pool):
        return 0.0
    price = settings.aws_price(pool)
    estimate = estimate_usd(circuits, shots, Price(price["per_task"], price["per_shot"]))
    remaining = quotas.budget_usd - tenant.spent_usd
    if estimate > remaining:
        raise CostError(
            [
                FieldError(
                    ("samples",),
                    f"estimate ${estimate:.2f} exceeds tenant {tenant_id}'s remaining budget "
                    f"${max(0.0, remaining):.2f}",
                )
            ],
            estimate,
        )
    tenant.spent_usd += estimate
    session.flush()
    return estimate
