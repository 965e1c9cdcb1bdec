"""Training run in-process for tests: a step's fragments on the node's executor, whole or cut."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from nodes.encoding import expand_bindings
from nodes.executors import adjoint
from nodes.executors.local import LocalExecutor
from qorchestra.config import Settings
from qorchestra.cutting.experiments import CutExperiment
from qorchestra.training import cut, fragments, trainer
from qorchestra.training.spec import MinimizeJob, TrainJob

#: The node agents' own executor, run in this process.
EXECUTOR = LocalExecutor("braket_sv")
#: Every circuit through Braket's own simulation, one at a time (references for the batched one).
BRAKET_EXECUTOR = LocalExecutor("braket_sv", vectorized=False)


def run_request(
    setup: trainer.Setup,
    request: trainer.StepRequest,
    per_fragment: int = 16,
    executor: LocalExecutor | None = None,
) -> np.ndarray:
    """Run a step's fragments as a node would (encode, execute); readouts in binding order.
    ``executor`` defaults to the agents' own (:data:`EXECUTOR`)."""
    executor = executor or EXECUTOR
    rows: list[list[float]] = []
    for part in fragments.slices(request, per_fragment):
        fragment = fragments.build_fragment(
            setup, request, part, job_id="j", fragment_id="f", pool="local-sv", shots=0
        )
        fragment.bindings.extend(expand_bindings(fragment.encoding))
        answer = (
            adjoint.execute(executor, fragment)
            if adjoint.requested(fragment)
            else executor.execute(fragment)
        )
        rows += [list(r.expectations.values) for r in answer]
    return np.asarray(rows)


def run_job(
    job: TrainJob | MinimizeJob,
    stop_after: int | None = None,
    state: Any = None,
    request: Any = None,
) -> tuple[dict[str, Any] | None, Any, Any]:
    """The whole loop in-process; with ``stop_after`` it returns the JSON checkpoint instead."""
    setup = trainer.build_setup(job, 20)
    if state is None:
        state, request = trainer.start(job, setup)
    done = 0
    while True:
        outcome = trainer.advance(job, setup, state, request, run_request(setup, request))
        state, request, done = outcome.state, outcome.request, done + 1
        if request is None:
            return outcome.result, state, None
        if stop_after is not None and done == stop_after:
            # what the store keeps: JSON
            return None, json.loads(json.dumps(state)), request.to_json()


#: Four qubits joined by one CNOT in the middle: one gate cut (overhead 9) beats a wire cut.
CUTTABLE_TEMPLATE = """OPENQASM 3.0;
input float w0; input float w1; input float w2; input float w3;
input float w4; input float w5; input float w6; input float w7;
qubit[4] q;
ry(w0) q[0]; ry(w1) q[1]; ry(w2) q[2]; ry(w3) q[3];
cnot q[0], q[1];
cnot q[1], q[2];
cnot q[2], q[3];
rx(w4) q[0]; rx(w5) q[1]; rx(w6) q[2]; rx(w7) q[3];
"""


def run_cut_request(
    setup: trainer.Setup, request: trainer.StepRequest, found: CutExperiment, width: int
) -> np.ndarray:
    """A cut step as the platform runs it: every slice once per subexperiment, then knitted."""
    answers = []
    for part in fragments.slices(request, 16):
        for run in cut.runs(found):
            fragment = fragments.build_fragment(
                setup, request, part, job_id="j", fragment_id="f", pool="local-sv", shots=0
            )
            cut.retarget(fragment, run)
            assert fragment.qubits <= width and fragment.encoding.qubits == setup.model.qubits
            fragment.bindings.extend(expand_bindings(fragment.encoding))
            values = [list(r.expectations.values) for r in EXECUTOR.execute(fragment)]
            answers.append(cut.Answer(run.index, part.offset, values))
    return cut.readouts(found, request, answers)


def losses(job: TrainJob | MinimizeJob, settings: Settings | None, steps: int) -> list[Any]:
    """Metrics of the first ``steps`` advances; cut when ``settings`` make the pool narrow."""
    setup = trainer.build_setup(job, cut.MAX_WIDTH)
    found = None
    if settings is not None:
        cut.settle(job, setup, settings)
        found = cut.experiment(job, setup, settings)
        assert found is not None
    state, first = trainer.start(job, setup)
    request: trainer.StepRequest | None = first
    out = []
    for _ in range(steps):
        assert request is not None
        if found is None:
            readouts = run_request(setup, request)
        else:
            readouts = run_cut_request(setup, request, found, 3)
        outcome = trainer.advance(job, setup, state, request, readouts)
        out += outcome.metrics
        state, request = outcome.state, outcome.request
        if request is None:
            break
    return out


def minimize_template(**changes: Any) -> MinimizeJob:
    """A 3-step minimisation of a 4-qubit Hamiltonian over ``CUTTABLE_TEMPLATE`` (``changes``
    replace top-level fields of its spec)."""
    spec: dict[str, Any] = {
        "kind": "minimize",
        "hamiltonian": {
            "terms": [
                {"coefficient": 1.0, "pauli": "ZZII"},
                {"coefficient": 0.5, "pauli": "IXXI"},
                {"coefficient": -0.7, "pauli": "IIZZ"},
                {"coefficient": 0.3, "pauli": "ZIIZ"},
            ]
        },
        "ansatz": {
            "type": "template",
            "template": {"source": CUTTABLE_TEMPLATE, "weight_inputs": [f"w{i}" for i in range(8)]},
        },
        "optimizer": {"name": "adam", "learning_rate": 0.1},
        "steps": 3,
        "seed": 5,
    }
    spec.update(changes)
    return MinimizeJob.model_validate(spec)
