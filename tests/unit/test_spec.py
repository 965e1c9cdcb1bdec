"""Job validation: every refusal names the field and the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from qorchestra.config import Settings
from qorchestra.examples import EXAMPLES_DIR
from qorchestra.jobs.circuits import CircuitsJob, validate_job
from qorchestra.jobs.errors import SpecError
from qorchestra.jobs.kinds import AnyJob, job_kind
from qorchestra.training.spec import MinimizeJob, TrainJob
from qorchestra.training.trainer import build_setup

GOOD = """OPENQASM 3.0;
input float a;
input float b;
qubit[2] q;
rx(a) q[0];
cnot q[0], q[1];
ry(b) q[1];
"""


def body(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "pool": "local-sv",
        "shots": 0,
        "result": {"type": "expectation", "observables": ["ZZ"]},
        "programs": [{"source": GOOD, "bindings": [{"a": 0.1, "b": 0.2}]}],
    }
    base.update(changes)
    return base


def errors(payload: dict[str, Any], settings: Settings | None = None) -> list[tuple[Any, str]]:
    with pytest.raises(SpecError) as info:
        validate_job(CircuitsJob.model_validate(payload), settings or Settings())
    return [(e.loc, e.msg) for e in info.value.errors]


def test_a_good_job_passes_and_is_described() -> None:
    infos = validate_job(CircuitsJob.model_validate(body()), Settings())
    assert infos[0].inputs == ("a", "b") and infos[0].qubits == 2


def test_the_documented_example_is_valid() -> None:
    example = CircuitsJob.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]
    validate_job(CircuitsJob.model_validate(example), Settings())


@pytest.mark.parametrize(
    ("changes", "loc", "reason"),
    [
        ({"programs": [{"source": "OPENQASM 3.0; qubit[2] q; h q[0"}]},
         ("programs", 0, "source"), "syntax error at line 1"),
        ({"programs": [{"source": "OPENQASM 3.0; qubit[2] q; foo q[0];"}]},
         ("programs", 0, "source"), "Gate foo is not defined"),
        ({"programs": [{"source": GOOD, "bindings": [{"a": 1.0}]}]},
         ("programs", 0, "bindings", 0), "missing ['b']"),
        ({"programs": [{"source": GOOD, "bindings": [{"a": 1.0, "b": 2.0, "c": 3.0}]}]},
         ("programs", 0, "bindings", 0), "unknown ['c']"),
        ({"programs": [{"source": GOOD}]}, ("programs", 0, "bindings"), "needs bindings"),
        ({"result": {"type": "counts"}}, ("shots",), "counts need shots > 0"),
        ({"result": {"type": "expectation"}}, ("result", "observables"), "at least one"),
        ({"result": {"type": "expectation", "observables": ["ZZZ"]}},
         ("result", "observables"), "3 letters; program 0 has 2 qubits"),
        ({"pool": "aws-nowhere"}, ("pool",), "unknown AWS pool"),
        ({"shots": 10**9}, ("shots",), "at most"),
        ({"programs": [{"source": GOOD.replace("ry(b) q[1];", "bit[2] c; c = measure q;"),
                        "bindings": [{"a": 0.1, "b": 0.2}]}]},
         ("programs", 0, "source"), "measurement statements only go with result type counts"),
        ({"programs": [{"source": "OPENQASM 3.0; input bit x; qubit q;", "bindings": [{"x": 1}]}]},
         ("programs", 0, "source"), "only float and angle"),
    ],
    ids=["syntax", "unknown-gate", "missing-input", "unknown-input", "no-bindings",
         "counts-exact", "no-observables", "observable-width", "aws-pool", "shots-bound",
         "measure-with-expectation", "bit-input"],
)  # fmt: skip
def test_refusals_name_field_and_reason(changes: dict[str, Any], loc: tuple[Any, ...],
                                        reason: str) -> None:  # fmt: skip
    found = errors(body(**changes))
    assert any(where == loc and reason in msg for where, msg in found), found


def test_qubit_limit_of_the_pool() -> None:
    found = errors(body(), Settings(pool_max_qubits={"local-sv": 1}))
    assert (("programs", 0, "source"), "uses 2 qubits; pool local-sv allows 1") in found


def test_binding_count_bound() -> None:
    payload = body(programs=[{"source": GOOD, "bindings": [{"a": 0.0, "b": 0.0}] * 5}])
    found = errors(payload, Settings(max_bindings=4))
    assert found == [(("programs",), "5 bindings in all; at most 4")]


@pytest.mark.parametrize(
    "payload",
    [
        body(shots=-1),
        body(pool="Local SV"),
        body(programs=[]),
        body(result={"type": "expectation", "observables": ["ZQ"]}),
        body(result={"type": "histogram"}),
        body(unexpected=True),
    ],
    ids=["negative-shots", "pool-name", "no-programs", "pauli-letters", "result-type", "extra"],
)
def test_schema_refusals(payload: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CircuitsJob.model_validate(payload)


@pytest.mark.parametrize(
    "path",
    sorted(p for p in EXAMPLES_DIR.iterdir() if p.suffix in (".json", ".yaml")),
    ids=lambda p: p.name,
)
def test_the_shipped_examples_are_valid(path: Path) -> None:
    job = TypeAdapter(AnyJob).validate_python(yaml.safe_load(path.read_text()))
    job_kind(job.kind).prepare(job, Settings(), lambda dataset_id: None)


def test_the_openapi_examples_of_training_jobs_are_valid() -> None:
    for model in (TrainJob, MinimizeJob):
        example = model.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]
        build_setup(model.model_validate(example), 20)
