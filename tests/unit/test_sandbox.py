"""The parser sandbox: worker processes that import Braket once and parse under a bound."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from api.sandbox import ProgramSandbox
from qorchestra.qasm import ProgramError

PROGRAM = "OPENQASM 3.0;\ninput float a;\nqubit[2] q;\nrx(a) q[0];\ncnot q[0], q[1];\n"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ProgramSandbox]:
    box = ProgramSandbox(workers=2, timeout_s=20.0)
    try:
        yield box
    finally:
        box.close()


def test_wait_ready_returns_once_every_worker_imported_braket(sandbox: ProgramSandbox) -> None:
    sandbox.wait_ready()

    workers = list(sandbox._idle.queue)
    assert len(workers) == 2
    assert all(w is not None and w.ready for w in workers)
    assert all(w is not None and w.proc.poll() is None for w in workers)


def test_a_ready_sandbox_parses_and_refuses(sandbox: ProgramSandbox) -> None:
    sandbox.wait_ready()

    info = sandbox.analyze(PROGRAM)
    assert (info.inputs, info.qubits) == (("a",), 2)
    with pytest.raises(ProgramError):
        sandbox.analyze("OPENQASM 3.0;\nqubit[2] q;\nfoo q[0];\n")


def test_a_program_cannot_make_the_parser_read_a_file(
    sandbox: ProgramSandbox, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "secret.inc"
    secret.write_text("not-a-gate-definition-but-a-secret;\n")
    source = f'OPENQASM 3.0;\ninclude "{secret}";\nqubit q;\nh q;\n'

    with pytest.raises(ProgramError, match=r"include .* is not supported"):
        sandbox.analyze(source)

    out, err = capfd.readouterr()
    assert "secret" not in out + err.replace(str(secret), "")


def test_a_closed_sandbox_refuses_work() -> None:
    box = ProgramSandbox(workers=1)
    box.wait_ready()
    box.close()

    with pytest.raises(RuntimeError, match="closed"):
        box.analyze(PROGRAM + "x q[1];\n")  # not cached: it needs a worker
