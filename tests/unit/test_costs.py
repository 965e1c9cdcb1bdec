"""The cost maths, with no I/O: the estimate is an upper bound of what any plan of the job's
tasks actually costs, the checks on what an agent reports, and the refund when a job ends."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qorchestra.costs import Price, actual_usd, estimate_usd, refund_usd, usage_problem
from qorchestra.program_sets import ProgramSetLimits, plan_tasks, task_bound

GARNET = Price(per_task=0.3, per_shot=0.00145)

prices = st.builds(
    Price,
    per_task=st.floats(0, 5, allow_nan=False),
    per_shot=st.floats(0, 0.1, allow_nan=False),
)
limits = st.none() | st.builds(
    ProgramSetLimits,
    max_executables=st.integers(1, 120),
    max_total_shots=st.integers(1, 200_000),
    min_total_shots=st.integers(0, 5_000),
)


@settings(max_examples=300, deadline=None)
@given(
    fragments=st.lists(st.integers(1, 40), min_size=1, max_size=8),
    shots=st.integers(0, 5_000),
    runs=st.integers(1, 4),
    grouped=st.integers(1, 4),
    device=limits,
    price=prices,
)
def test_the_estimate_bounds_what_any_plan_of_the_job_actually_costs(
    fragments: list[int],
    shots: int,
    runs: int,
    grouped: int,
    device: ProgramSetLimits | None,
    price: Price,
) -> None:
    # The API counts ``runs`` runs per binding (one per observable); an agent may group the
    # observables into fewer (``grouped``), which changes how program sets chunk them.
    node_runs = min(runs, grouped)
    executables = sum(fragments) * runs
    tasks = task_bound(fragments, shots, device, runs) if device is not None else None
    estimate = estimate_usd(executables, shots, price, tasks=tasks)
    actual = 0.0
    for bindings in fragments:
        plan = plan_tasks(bindings, shots, device, node_runs)
        used_shots = bindings * node_runs * shots
        cost = actual_usd(plan.tasks, used_shots, price)
        # what an honest agent reports of the fragment passes the orchestrator's check
        assert (
            usage_problem(
                tasks=plan.tasks,
                shots=used_shots,
                cost_usd=cost,
                price_per_task_usd=price.per_task,
                price_per_shot_usd=price.per_shot,
                max_executables=bindings * runs,
                shots_per_run=shots,
                table=price,
            )
            is None
        )
        actual += cost
    assert actual <= estimate + 1e-9
    assert refund_usd(estimate, actual) >= -1e-9


def test_program_set_limits_lower_the_estimate_to_the_tasks_they_make() -> None:
    # 20 bindings x 3 observables of 100 shots, in fragments of 10 bindings, on a device taking
    # 40 executables and 10_000 shots per program set: 10 x 3 = 30 executables per task, so one
    # task per fragment, whichever grouping of the observables an agent makes.
    device = ProgramSetLimits(max_executables=40, max_total_shots=10_000)
    tasks = task_bound([10, 10], 100, device, 3)
    assert tasks == 2
    per_binding = estimate_usd(60, 100, GARNET)
    assert per_binding == pytest.approx(60 * 0.3 + 60 * 100 * 0.00145)  # 26.70
    assert estimate_usd(60, 100, GARNET, tasks=tasks) == pytest.approx(2 * 0.3 + 6000 * 0.00145)


def test_a_minimum_total_shots_counts_the_grouping_that_falls_back_to_single_tasks() -> None:
    # 4 bindings x 2 runs of 10 shots make one program set of 80 shots; grouped into one run,
    # 40 shots are below the device's minimum of 50, and every binding is a task of its own.
    device = ProgramSetLimits(max_executables=100, max_total_shots=1000, min_total_shots=50)
    assert plan_tasks(4, 10, device, 2).tasks == 1
    assert plan_tasks(4, 10, device, 1).tasks == 4
    assert task_bound([4], 10, device, 2) == 4


def test_the_estimate_rounds_up_to_the_cent() -> None:
    assert estimate_usd(3, 10, GARNET) == pytest.approx(0.95)  # 0.90 + 0.0435
    assert actual_usd(3, 30, GARNET) == pytest.approx(0.9435)


def honest(**changes: float) -> dict[str, float]:
    report: dict[str, float] = {
        "tasks": 3,
        "shots": 30,
        "cost_usd": 0.9435,
        "price_per_task_usd": 0.3,
        "price_per_shot_usd": 0.00145,
    }
    report.update(changes)
    return report


def problem(report: dict[str, float]) -> str | None:
    return usage_problem(
        tasks=int(report["tasks"]),
        shots=int(report["shots"]),
        cost_usd=report["cost_usd"],
        price_per_task_usd=report["price_per_task_usd"],
        price_per_shot_usd=report["price_per_shot_usd"],
        max_executables=3,
        shots_per_run=10,
        table=GARNET,
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"cost_usd": math.nan}, "not a finite number", id="nan-cost"),
        pytest.param({"cost_usd": math.inf}, "not a finite number", id="infinite-cost"),
        pytest.param({"cost_usd": -0.1}, "not a finite number >= 0", id="negative-cost"),
        pytest.param({"price_per_task_usd": -0.3}, ">= 0", id="negative-price"),
        pytest.param({"tasks": 4}, "at most 3", id="more-tasks-than-executables"),
        pytest.param({"shots": 31}, "at most 3 x 10", id="more-shots-than-runs"),
        pytest.param({"cost_usd": 0.5}, "at its prices", id="cost-not-its-sum"),
        pytest.param(
            {"price_per_task_usd": 30.0, "cost_usd": 90.0435},
            "from the pool's price table",
            id="dearer-than-the-table",
        ),
    ],
)
def test_an_impossible_usage_report_is_refused(changes: dict[str, float], reason: str) -> None:
    assert problem(honest()) is None
    found = problem(honest(**changes))
    assert found is not None and reason in found


def test_a_cheaper_price_than_the_table_is_what_the_tenant_pays() -> None:
    assert problem(honest(price_per_shot_usd=0.0, cost_usd=0.9)) is None


def test_a_finished_job_pays_its_actual_cost() -> None:
    assert refund_usd(0.95, 0.9435) == pytest.approx(0.0065)
    assert refund_usd(0.94, 0.9435) == pytest.approx(-0.0035)  # only if the bounds broke
    assert refund_usd(1.0, 0.3) == pytest.approx(0.7)
    assert refund_usd(1.0, 0.0) == 1.0  # cancelled before anything ran: all of it back
