"""A real ProgramSandbox (worker processes): one tenant's slow programs do not hold up another
tenant's fast one, a repeated program is served from the cache, a killed worker's replacement
is a spare that imported Braket already, a request's parse budget bounds its parses, and the
time bound holds for a program's parse and its emulated device's checks together."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from api.sandbox import BudgetSpent, ProgramSandbox
from qorchestra.devices import SHIPPED_PROFILES
from qorchestra.qasm import ProgramError

FAST = "OPENQASM 3.0;\nqubit[2] q;\nh q[0];\ncnot q[0], q[1];\n"
#: B's fast program stays under this while A's slow ones run (each slow one takes >= 3 s).
BOUND_S = 1.5


def slow(i: int, n: int = 60_000) -> str:
    """Braket unrolls the loop: about 0.2 ms per turn, so >= 3 s (the bound here) at 60 000."""
    return f"OPENQASM 3.0;\nqubit[1] q;\n// {i}\nfor int i in [0:{n}] {{ x q[0]; }}\n"


@pytest.fixture()
def sandbox() -> Iterator[ProgramSandbox]:
    box = ProgramSandbox(workers=2, timeout_s=3.0, spares=1, wait_s=10.0)
    box.wait_ready()
    try:
        yield box
    finally:
        box.close()


def test_a_slow_tenant_does_not_hold_up_another(sandbox: ProgramSandbox) -> None:
    refused: list[str] = []

    def flood(i: int) -> None:
        try:
            sandbox.analyze(slow(i), tenant="a")
        except ProgramError as exc:
            refused.append(str(exc))

    flooders = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(4)]
    for thread in flooders:
        thread.start()
    time.sleep(0.5)  # a's programs hold a worker, the rest of a's backlog waits

    start = time.monotonic()
    info = sandbox.analyze(FAST, tenant="b")
    took = time.monotonic() - start

    assert info.qubits == 2
    assert took < BOUND_S, f"b waited {took:.2f}s behind a's slow programs"
    for thread in flooders:
        thread.join(30)
    assert len(refused) == 4 and all("longer than 3s" in r for r in refused)
    assert sandbox.killed == 4


def test_a_repeated_program_is_served_from_the_cache(sandbox: ProgramSandbox) -> None:
    source = slow(99, n=5_000)  # about a second to parse
    first = sandbox.analyze(source, tenant="a")
    hits = sandbox.cache.hits

    start = time.monotonic()
    again = sandbox.analyze(source, tenant="a")

    assert again == first
    assert sandbox.cache.hits == hits + 1
    assert time.monotonic() - start < 0.1
    with pytest.raises(ProgramError):  # a refusal is remembered as well
        sandbox.analyze(slow(98), tenant="a")
    killed = sandbox.killed
    with pytest.raises(ProgramError, match="longer than"):
        sandbox.analyze(slow(98), tenant="a")
    assert sandbox.killed == killed


def test_a_killed_worker_is_replaced_by_a_ready_spare(sandbox: ProgramSandbox) -> None:
    with pytest.raises(ProgramError):
        sandbox.analyze(slow(1), tenant="a")
    assert sandbox.killed == 1

    start = time.monotonic()
    sandbox.analyze(FAST + "x q[1];\n", tenant="a")  # needs a worker: the spare, ready now
    sandbox.analyze(FAST + "x q[0];\n", tenant="a")
    assert time.monotonic() - start < 1.0


def test_the_request_budget_bounds_its_parses(sandbox: ProgramSandbox) -> None:
    deadline = time.monotonic() + 1.0
    start = time.monotonic()
    with pytest.raises(BudgetSpent):
        sandbox.analyze(slow(7), tenant="a", deadline=deadline)
    assert time.monotonic() - start < 2.0
    with pytest.raises(BudgetSpent):  # the budget is spent: the next program is not parsed
        sandbox.analyze(FAST, tenant="a", deadline=deadline)
    # a budget refusal is not the program's fault: it is not cached
    assert sandbox.analyze(FAST, tenant="a").qubits == 2


def test_the_bound_holds_for_the_parse_and_the_emulators_checks_together(
    sandbox: ProgramSandbox,
) -> None:
    # Braket's connectivity check of a verbatim box takes time quadratic in its gates: seconds
    # for these 1 200, a fraction of that to parse them
    source = (
        "OPENQASM 3.0;\nqubit[2] q;\nfor int i in [0:600] { prx(0.1, 0.2) q[0]; cz q[0], q[1]; }\n"
    )
    assert sandbox.analyze(source, tenant="a").qubits == 2
    killed = sandbox.killed

    start = time.monotonic()
    with pytest.raises(ProgramError) as refused:
        sandbox.analyze(source, tenant="a", device=SHIPPED_PROFILES["emu-garnet"])

    assert str(refused.value) == (
        "parsing and the checks of IQM Garnet's emulator took longer than 3s; simplify the program"
    )
    assert time.monotonic() - start < 5.0
    assert sandbox.killed == killed + 1
