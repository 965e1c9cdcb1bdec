"""Circuit cutting: run a circuit wider than any node as subcircuits that fit, and knit the
expectation values of the whole circuit back from theirs.

Pure code, no I/O. A caller (a circuits job, a training step) does::

    experiment = cut_program(source, observables, max_subcircuit_qubits=6)
    # run every experiment.programs[p].source for every binding, asking for the Pauli
    # strings experiment.programs[p].observables, then
    values = experiment.reconstruct(results, bindings)  # [binding][observable]

Modules: :mod:`.ir` (OpenQASM 3 in and out, via Braket's SDK), :mod:`.gates` (cuttable
two-qubit gates), :mod:`.qpd` (the decompositions), :mod:`.finder` (where to cut),
:mod:`.plan` (the subcircuits), :mod:`.experiments` (subexperiments, reconstruction, shots
and standard errors), :mod:`.signs` (signed mid-circuit measurements and their deferred form).
"""

from __future__ import annotations

from collections.abc import Sequence

from qorchestra.cutting.experiments import CutExperiment, SubProgram
from qorchestra.cutting.ir import CuttingError
from qorchestra.cutting.plan import DEFAULT_SEARCH_STATES, CutPlan, plan_cuts

__all__ = [
    "DEFAULT_SEARCH_STATES",
    "CutExperiment",
    "CutPlan",
    "CuttingError",
    "SubProgram",
    "cut_program",
    "plan_cuts",
]


def cut_program(
    source: str,
    observables: Sequence[str],
    max_subcircuit_qubits: int,
    *,
    max_states: int = DEFAULT_SEARCH_STATES,
) -> CutExperiment:
    """Cut ``source`` into subcircuits of at most ``max_subcircuit_qubits`` qubits (a cut gate
    measures in place and adds none) and build the subexperiments that give ``observables``
    (Pauli strings over the whole program, qubit 0 first). Raises CuttingError when that
    cannot be done."""
    plan = plan_cuts(source, max_subcircuit_qubits, max_states=max_states)
    return CutExperiment(plan, observables)
