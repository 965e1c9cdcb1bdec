"""Specs of ``train`` and ``minimize`` jobs and their validation (pure).

Pydantic checks types and bounds; :func:`validate_training` checks what needs the pieces
together (features against the model, labels against the readout, templates against Braket's
parser, qubits against the pool) and raises :class:`~qorchestra.jobs.errors.SpecError`
naming fields.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from braket.default_simulator.openqasm.parser import openqasm_ast as qasm_ast
from braket.default_simulator.openqasm.parser.openqasm_parser import parse as parse_qasm
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from qorchestra.cutting.layout import CuttingSpec
from qorchestra.examples import example
from qorchestra.pool_choice import AnyPoolChoice, pool_field
from qorchestra.qasm import ProgramError, analyze
from qorchestra.training.data import BUILTIN as BUILTIN_DATA
from qorchestra.training.hamiltonians import BUILTIN as BUILTIN_HAMILTONIANS

_PAULI = re.compile(r"^[IXYZ]+$")


#: The spending cap every job kind carries.
MaxCostUsd = Annotated[
    float | None,
    Field(
        ge=0,
        le=1e9,
        description="Spending cap in USD; required on paid pools (`aws-*`, `emu-*`). The API "
        "estimates the job's cost from its price table and refuses (422, with the estimate) a "
        "job whose estimate exceeds the cap or the tenant's remaining budget.",
    ),
]


#: How long a job may wait for a node agent of its pool, every job kind.
MaxQueueS = Annotated[
    float | None,
    Field(
        gt=0,
        le=365 * 24 * 3600,
        description="Fail the job once it has waited this many seconds for a node agent of its "
        "pool (while none is live); null waits until one starts.",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TemplateSpec(_Strict):
    """A user circuit: OpenQASM 3 whose ``input float`` parameters are features and weights."""

    source: str = Field(min_length=1, description="OpenQASM 3 source with `input float` inputs.")
    feature_inputs: list[str] = Field(
        default_factory=list,
        description="Inputs that receive the scaled features, in feature order (train only).",
    )
    weight_inputs: list[str] = Field(
        min_length=1,
        description="Inputs that are trainable weights. For parameter shift each must be the "
        "whole angle of one rx/ry/rz gate.",
    )


class ModelSpec(_Strict):
    """The classifier: a feature map and a trainable ansatz, or a template."""

    qubits: int = Field(4, ge=1, le=32, description="Qubits of the circuit.")
    feature_map: Literal["angle", "zz"] = Field(
        "angle",
        description="`angle`: ry(x) per qubit, qubit q takes feature q mod features; `zz`: "
        "Hadamards, rz(2x) and rz(2(pi-x_a)(pi-x_b)) entanglers on a ring.",
    )
    layers: int = Field(
        2, ge=1, le=50, description="Hardware-efficient layers (ry, rz, CNOT ring)."
    )
    reupload: bool = Field(False, description="Apply the feature map again before every layer.")
    readout_scale: float = Field(
        2.0, gt=0, le=100, description="Multi-class: logits = scale * <Z_c> before the softmax."
    )
    template: TemplateSpec | None = Field(
        None, description="A user circuit instead of feature map + ansatz."
    )


class DataSpec(_Strict):
    """Where the samples come from: exactly one of `builtin`, `features`, `dataset_id`."""

    builtin: Literal["moons", "circles", "iris"] | None = Field(
        None, description="A set that ships with qorchestra (generated from the job's seed)."
    )
    samples: int = Field(100, ge=2, le=100_000, description="Samples of a generated set.")
    noise: float = Field(0.1, ge=0, le=10, description="Gaussian noise of a generated set.")
    features: list[list[float]] | None = Field(None, description="Inline feature rows.")
    labels: list[int] | None = Field(None, description="Inline labels, class indices 0..k-1.")
    dataset_id: str | None = Field(
        None, max_length=64, description="A CSV uploaded to `POST /v1/datasets` (its id)."
    )
    validation_fraction: float = Field(
        0.25, ge=0, lt=1, description="Share of samples held out for validation (seeded)."
    )
    scaling: Literal["minmax", "standard", "none"] = Field(
        "minmax",
        description="Feature scaling fitted on the training split; `minmax` maps each feature "
        "to [0, pi]. The nodes apply it.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        given = [n for n in ("builtin", "features", "dataset_id") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of builtin, features (with labels) or dataset_id; got "
                + (", ".join(given) or "none")
            )
        if (self.features is None) != (self.labels is None):
            raise ValueError("features and labels go together")
        return self


class OptimizerSpec(_Strict):
    """The optimizer and its settings (each applies to the optimizers named)."""

    name: Literal["adam", "sgd", "spsa"] = Field("adam", description="`adam`, `sgd` or `spsa`.")
    learning_rate: float = Field(0.1, gt=0, le=10, description="adam, sgd: step size.")
    momentum: float = Field(0.0, ge=0, lt=1, description="sgd: momentum.")
    beta1: float = Field(0.9, ge=0, lt=1, description="adam: first-moment decay.")
    beta2: float = Field(0.999, ge=0, lt=1, description="adam: second-moment decay.")
    epsilon: float = Field(1e-8, gt=0, description="adam: denominator floor.")
    a: float = Field(0.2, gt=0, description="spsa: step gain a_k = a / (k + 1 + A)^alpha.")
    c: float = Field(
        0.1, gt=0, description="spsa (and the spsa gradient): perturbation c_k = c / (k+1)^gamma."
    )
    stability: float = Field(0.0, ge=0, description="spsa: A in the step gain.")
    alpha: float = Field(0.602, gt=0, description="spsa: step gain decay.")
    gamma: float = Field(0.101, ge=0, description="spsa: perturbation decay.")


class EarlyStopping(_Strict):
    """Stop when the validation loss has not improved by `min_delta` for `patience` epochs."""

    patience: int = Field(
        3, ge=1, le=1000, description="Epochs without improvement before training stops."
    )
    min_delta: float = Field(
        0.0,
        ge=0,
        description="Smallest fall of the validation loss below its best that counts as an "
        "improvement. Needs a validation split (`data.validation_fraction` > 0).",
    )


class TrainingSpec(_Strict):
    """How to train."""

    loss: Literal["bce", "cross_entropy", "mse"] = Field(
        "cross_entropy", description="`bce` (two classes), `cross_entropy` or `mse`."
    )
    optimizer: OptimizerSpec = Field(
        default_factory=OptimizerSpec, description="The optimizer; default adam, rate 0.1."
    )
    gradient: Literal["parameter_shift", "spsa", "adjoint"] = Field(
        "parameter_shift",
        description="`parameter_shift` (exact; 1 + 2 x parameters circuits per sample), `spsa` "
        "(3 circuits per sample) or `adjoint` (exact, computed on the agent from one forward "
        "and one backward pass per sample; pool local-sv with shots 0 only).",
    )
    epochs: int = Field(5, ge=1, le=10_000, description="Passes over the training split, at most.")
    batch_size: int = Field(
        16,
        ge=1,
        le=10_000,
        description="Training samples per optimizer step; the last batch of an epoch may be "
        "smaller.",
    )
    early_stopping: EarlyStopping | None = Field(
        None, description="Stop before `epochs` when the validation loss stalls; null = never."
    )


#: The OpenAPI example, also the demo's classifier: it reaches about 97% on moons in 4 epochs.
TRAIN_EXAMPLE: dict[str, Any] = example("moons-classifier")


class _OptimisationJob(_Strict):
    """What every train and minimize job has."""

    model_config = ConfigDict(extra="forbid", serialize_by_alias=True)

    name: str = Field("", max_length=200, description="A label for people.")
    pools: AnyPoolChoice = pool_field()
    shots: int = Field(0, ge=0, description="Shots per circuit; 0 = exact expectation values.")
    seed: int = Field(
        0,
        ge=0,
        le=2**32 - 1,
        description="Seeds everything random: data, split, initial weights, batch order, SPSA.",
    )
    max_cost_usd: MaxCostUsd = None
    max_queue_s: MaxQueueS = None
    cutting: CuttingSpec | None = Field(
        None,
        description="Run the circuit as subcircuits of at most `max_subcircuit_qubits` qubits "
        "and knit every readout back (qorchestra/training/cut.py). On by itself, at the "
        "pool's qubit limit, for a circuit wider than the pool.",
    )

    @property
    def pool(self) -> str:
        """The first pool it names: the one the API checks it against first."""
        return self.pools[0]


class TrainJob(_OptimisationJob):
    """A variational quantum classifier trained across the pool."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [TRAIN_EXAMPLE]})

    kind: Literal["train"] = Field(description="`train`: a variational classifier.")
    model: ModelSpec = Field(
        default_factory=ModelSpec,
        description="The classifier circuit; default 4 qubits, angle feature map, 2 layers.",
    )
    data: DataSpec = Field(description="The samples: a built-in set, inline rows or a dataset.")
    training: TrainingSpec = Field(
        default_factory=TrainingSpec,
        description="Loss, optimizer, gradient, epochs and batches; defaults as listed there.",
    )


class PauliTerm(_Strict):
    """``coefficient * pauli``."""

    coefficient: float = Field(description="Real weight of the term (in the Hamiltonian's units).")
    pauli: str = Field(min_length=1, max_length=64, description="Qubit 0 first, e.g. `ZZI`.")

    @field_validator("pauli")
    @classmethod
    def _letters(cls, value: str) -> str:
        if not _PAULI.match(value):
            raise ValueError("use only the letters I, X, Y, Z")
        return value


class HamiltonianSpec(_Strict):
    """Weighted Pauli strings, or a built-in molecule (`h2`)."""

    builtin: Literal["h2"] | None = Field(None, description="`h2`: H2/STO-3G, 2 qubits.")
    terms: list[PauliTerm] = Field(default_factory=list, description="The weighted terms.")

    @model_validator(mode="after")
    def _one_source(self) -> HamiltonianSpec:
        if (self.builtin is None) == (not self.terms):
            raise ValueError("give either builtin or terms")
        return self

    def resolved(self) -> list[tuple[float, str]]:
        """The terms as (coefficient, pauli) pairs."""
        if self.builtin is not None:
            return list(BUILTIN_HAMILTONIANS[self.builtin])
        return [(t.coefficient, t.pauli) for t in self.terms]


class AnsatzSpec(_Strict):
    """The trial circuit of a minimisation."""

    type: Literal["hardware_efficient", "qaoa", "template"] = Field(
        "hardware_efficient",
        description="`hardware_efficient` (ry, rz layers and a CNOT ring), `qaoa` (cost and "
        "mixer layers; the Hamiltonian must be diagonal), or `template`.",
    )
    layers: int = Field(
        2,
        ge=1,
        le=50,
        description="`hardware_efficient`: ry, rz + CNOT ring layers; `qaoa`: cost + mixer "
        "layers (p). Ignored for `template`.",
    )
    template: TemplateSpec | None = Field(
        None, description="For type `template` (and only then): the user circuit."
    )

    @model_validator(mode="after")
    def _template(self) -> AnsatzSpec:
        if (self.type == "template") != (self.template is not None):
            raise ValueError("type template goes with a template, and only then")
        return self


#: The OpenAPI example of a minimize job: VQE of H2.
MINIMIZE_EXAMPLE: dict[str, Any] = example("h2-vqe")


class MinimizeJob(_OptimisationJob):
    """Variational minimisation of a Hamiltonian (VQE, QAOA)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [MINIMIZE_EXAMPLE]})

    kind: Literal["minimize"] = Field(description="`minimize`: VQE or QAOA.")
    hamiltonian: HamiltonianSpec = Field(
        description="What to minimise: weighted Pauli strings or a built-in molecule."
    )
    ansatz: AnsatzSpec = Field(
        default_factory=AnsatzSpec,
        description="The trial circuit; default hardware-efficient, 2 layers.",
    )
    optimizer: OptimizerSpec = Field(
        default_factory=OptimizerSpec, description="The optimizer; default adam, rate 0.1."
    )
    gradient: Literal["parameter_shift", "spsa", "adjoint"] = Field(
        "parameter_shift",
        description="`adjoint` (exact, one forward and one backward pass on the agent; pool "
        "local-sv with shots 0 only), `parameter_shift` (exact; 1 + 2 x circuit parameters "
        "circuits per step) or "
        "`spsa` (3 circuits per step).",
    )
    steps: int = Field(50, ge=1, le=100_000, description="Optimizer steps.")
    tolerance: float = Field(
        0.0, ge=0, description="Stop early when the energy changes by less than this in a step."
    )
    initial_weights: list[float] | None = Field(None, description="Start here instead of random.")


class PredictRequest(_Strict):
    """Samples to classify with a trained model (raw features, as in training)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"samples": [[0.1, 0.4], [1.5, -0.3]]}]}
    )

    samples: list[list[float]] = Field(
        min_length=1,
        max_length=10_000,
        description="1 to 10000 rows of raw (unscaled) features, as many per row as the model "
        "was trained on; the model's scaling is applied on the nodes.",
    )


class PredictJob(_Strict):
    """A prediction with a trained model, made by the API for ``POST /v1/jobs/{id}/predict``."""

    name: str = ""
    kind: Literal["predict"]
    pool: str
    shots: int = 0
    model_job_id: str
    model: dict[str, Any]
    circuit_parameters: list[float]
    samples: list[list[float]]


def check_template(
    template: TemplateSpec, features: int | None, gradient: str = ""
) -> tuple[int, list[tuple[tuple[str | int, ...], str]]]:
    """Parse a template; returns its qubit count and (location, message) problems.

    With an exact ``gradient`` (``parameter_shift``, ``adjoint``) every weight must also be the
    whole angle of exactly one ``rx``/``ry``/``rz`` gate (:func:`shift_rule_problems`).
    """
    problems: list[tuple[tuple[str | int, ...], str]] = []
    try:
        info = analyze(template.source)
    except ProgramError as exc:
        return 0, [(("source",), str(exc))]
    declared = set(info.inputs)
    named = set(template.feature_inputs) | set(template.weight_inputs)
    if set(template.feature_inputs) & set(template.weight_inputs):
        problems.append((("weight_inputs",), "an input cannot be both a feature and a weight"))
    if declared != named:
        parts = []
        if declared - named:
            parts.append(f"inputs {sorted(declared - named)} are neither features nor weights")
        if named - declared:
            parts.append(f"{sorted(named - declared)} are not inputs of the program")
        problems.append((("source",), "; ".join(parts)))
    if features is not None and len(template.feature_inputs) != features:
        problems.append(
            (
                ("feature_inputs",),
                f"{len(template.feature_inputs)} feature inputs for data with {features} features",
            )
        )
    if info.measures:
        problems.append((("source",), "templates must not measure; the readout is added"))
    if gradient in EXACT_GRADIENTS:
        weights = [w for w in template.weight_inputs if w in declared]
        problems += [
            (("source",), msg) for msg in shift_rule_problems(template.source, weights, gradient)
        ]
    return info.qubits, problems


#: Gradients that are exact derivatives of the circuit, and need the rule below.
EXACT_GRADIENTS = ("parameter_shift", "adjoint")

#: Gates whose angle the parameter-shift rule (shift by +-pi/2) differentiates exactly.
SHIFT_GATES = frozenset({"rx", "ry", "rz"})

_BLOCKS: dict[type, str] = {
    qasm_ast.ForInLoop: "inside a loop",
    qasm_ast.WhileLoop: "inside a loop",
    qasm_ast.BranchingStatement: "inside an if",
    qasm_ast.QuantumGateDefinition: "inside a gate definition",
    qasm_ast.SubroutineDefinition: "inside a subroutine",
    qasm_ast.Box: "inside a box",
}


def shift_rule_problems(
    source: str, weights: list[str], gradient: str = "parameter_shift"
) -> list[str]:
    """Weights of a (parsed, valid) template the parameter-shift rule would get wrong.

    The rule assumes each weight is the whole angle of exactly one ``rx``/``ry``/``rz`` gate on
    one qubit, applied once: ``rx(2*w)``, ``rx(w + x)``, a weight in two gates, in a loop, in
    another gate, under a modifier (``ctrl @``) or on a whole register breaks that, and the
    gradient would be silently wrong. Read from Braket's syntax tree.
    """
    tree = parse_qasm(source)
    sizes = {
        stmt.qubit.name: stmt.size.value if isinstance(stmt.size, qasm_ast.IntegerLiteral) else 1
        for stmt in tree.statements
        if isinstance(stmt, qasm_ast.QubitDeclaration)
    }
    uses: dict[str, list[str | None]] = {w: [] for w in weights}  # None: a proper use
    for stmt in tree.statements:
        if isinstance(stmt, qasm_ast.IODeclaration):
            continue
        for ident in _identifiers(stmt, frozenset(weights)):
            uses[ident.name].append(_shift_use(stmt, ident, sizes))
    problems = []
    for weight, found in uses.items():
        if found == [None] or not found:  # an unused weight has gradient 0, exactly
            continue
        if all(reason is None for reason in found):
            detail = f"found in {len(found)} gates"
        else:
            detail = "; ".join(r for r in found if r is not None)
        problems.append(
            f"weight {weight!r} must be the whole angle of exactly one rx/ry/rz gate for "
            f"{gradient} ({detail}); use the spsa gradient for other circuits"
        )
    return problems


def _identifiers(node: Any, names: frozenset[str]) -> Iterator[qasm_ast.Identifier]:
    """Every reference to one of ``names`` under ``node`` (not those shadowed by the
    parameters of a gate or subroutine definition)."""
    if isinstance(node, qasm_ast.Identifier):
        if node.name in names:
            yield node
        return
    if isinstance(node, qasm_ast.QuantumGateDefinition):
        names = names - {a.name for a in node.arguments}
    elif isinstance(node, qasm_ast.SubroutineDefinition):
        names = names - {getattr(a.name, "name", "") for a in node.arguments}
    if isinstance(node, list):
        for item in node:
            yield from _identifiers(item, names)
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            if f.name != "span":
                yield from _identifiers(getattr(node, f.name), names)


def _shift_use(
    stmt: qasm_ast.Statement, ident: qasm_ast.Identifier, sizes: dict[str, int]
) -> str | None:
    """None when ``ident`` is the whole angle of a top-level rx/ry/rz on one qubit, else why
    it is not (with its line)."""
    line = f"line {ident.span.start_line}" if ident.span is not None else "the source"
    if type(stmt) in _BLOCKS:
        return f"{_BLOCKS[type(stmt)]} at {line}"
    if not isinstance(stmt, qasm_ast.QuantumGate) or not any(
        _contains(arg, ident) for arg in stmt.arguments
    ):
        return f"outside a gate angle at {line}"
    gate = stmt.name.name
    if gate not in SHIFT_GATES:
        return f"an angle of gate {gate!r} at {line}"
    if not (len(stmt.arguments) == 1 and stmt.arguments[0] is ident):
        return f"inside an expression in the {gate} angle at {line}"
    if stmt.modifiers:
        return f"under a gate modifier at {line}"
    applied = sum(
        sizes.get(q.name, 1) if isinstance(q, qasm_ast.Identifier) else 1 for q in stmt.qubits
    )
    if applied != 1:
        return f"{gate} applied to {applied} qubits at {line}"
    return None


def _contains(node: Any, target: qasm_ast.Identifier) -> bool:
    """Whether ``target`` (by identity) is ``node`` or inside it."""
    if node is target:
        return True
    if isinstance(node, list):
        return any(_contains(item, target) for item in node)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return any(
            _contains(getattr(node, f.name), target)
            for f in dataclasses.fields(node)
            if f.name != "span"
        )
    return False


__all__ = [
    "BUILTIN_DATA",
    "DataSpec",
    "MinimizeJob",
    "ModelSpec",
    "PredictJob",
    "PredictRequest",
    "TrainJob",
    "check_template",
    "shift_rule_problems",
]
