"""The parse workers' zygote (``api/sandbox.py``): workers are forked from a process that
imported Braket once, so a killed worker's replacement needs no import; without the zygote,
workers are fresh processes again; closing the sandbox ends every one of them."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from api.sandbox import ProgramSandbox, _Forked, _Zygote
from qorchestra.qasm import ProgramError
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not _Zygote.usable(), reason="needs fork, pidfds and SCM_RIGHTS"),
]

FAST = "OPENQASM 3.0;\nqubit[2] q;\nh q[0];\ncnot q[0], q[1];\n"
SLOW = "OPENQASM 3.0;\nqubit[1] q;\nfor int i in [0:200000] { x q[0]; }\n"


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


@pytest.fixture()
def sandbox() -> Iterator[ProgramSandbox]:
    box = ProgramSandbox(workers=2, timeout_s=1.0, spares=1)
    box.wait_ready()
    try:
        yield box
    finally:
        box.close()


def test_workers_and_spares_are_forked_by_the_zygote(sandbox: ProgramSandbox) -> None:
    zygote = sandbox._zygote
    assert zygote is not None
    workers = [*sandbox._idle.queue, *sandbox._spares]
    assert len(workers) == 3
    for worker in workers:
        assert isinstance(worker.proc, _Forked)
        assert worker.proc.poll() is None
        assert _parent(worker.proc.pid) == zygote.proc.pid
    assert sandbox.analyze(FAST, tenant="a").qubits == 2


def test_a_killed_workers_replacement_is_forked_too(sandbox: ProgramSandbox) -> None:
    with pytest.raises(ProgramError, match="longer than"):
        sandbox.analyze(SLOW, tenant="a")
    sandbox.wait_ready()  # nothing to wait for: the replacements are started in the background

    assert sandbox.killed == 1
    assert sandbox.analyze(FAST + "x q[1];\n", tenant="a").qubits == 2
    assert sandbox.analyze(FAST + "x q[0];\n", tenant="b").qubits == 2
    zygote = sandbox._zygote
    assert zygote is not None and not zygote.failed
    for worker in sandbox._idle.queue:
        assert isinstance(worker.proc, _Forked)


def test_without_the_zygote_workers_are_fresh_processes(sandbox: ProgramSandbox) -> None:
    zygote = sandbox._zygote
    assert zygote is not None
    zygote.proc.kill()
    zygote.proc.wait(10)
    with pytest.raises(ProgramError, match="longer than"):  # its worker is killed, replaced
        sandbox.analyze(SLOW + "// again\n", tenant="a")

    info = sandbox.analyze(FAST + "h q[1];\n", tenant="a")
    assert info.qubits == 2
    wait_until(lambda: zygote.failed, timeout=10, what="the replacement to find no zygote")
    wait_until(  # the replacement spare: a fresh process, that imports Braket itself
        lambda: any(not isinstance(w.proc, _Forked) for w in sandbox._spares),
        timeout=120,
        what="a fresh spare",
    )


def test_closing_ends_the_zygote_and_every_worker() -> None:
    box = ProgramSandbox(workers=2, timeout_s=5.0, spares=1)
    box.wait_ready()
    zygote = box._zygote
    assert zygote is not None
    workers = [*box._idle.queue, *box._spares]
    pids = [w.proc.pid for w in workers]
    box.close()

    assert zygote.proc.poll() is not None
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
