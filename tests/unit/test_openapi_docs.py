"""The OpenAPI docs (`/docs`): every field described, every request body with a working example.

The schema is the app's own, built without starting it (no Postgres, Kafka or gRPC needed).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter

from api.app import create_app
from api.routes.keys import KeyCreate
from api.routes.node_credentials import NodeEnroll
from api.routes.tenants import TenantUpdate
from qorchestra.config import Settings
from qorchestra.jobs.circuits import CircuitsJob, validate_job
from qorchestra.jobs.kinds import AnyJob
from qorchestra.training.data import parse_csv
from qorchestra.training.spec import MinimizeJob, PredictRequest, TrainJob
from qorchestra.training.trainer import build_setup

#: The models behind the component schemas that carry examples (a new one must be added here,
#: so that its examples are checked).
EXAMPLE_MODELS: dict[str, type[BaseModel]] = {
    model.__name__: model
    for model in (
        CircuitsJob,
        TrainJob,
        MinimizeJob,
        PredictRequest,
        KeyCreate,
        TenantUpdate,
        NodeEnroll,
    )
}

_REF = "#/components/schemas/"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    openapi: dict[str, Any] = create_app(Settings()).openapi()
    return openapi


def _subschemas(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The schemas directly inside ``node`` other than its properties (items, unions, maps)."""
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            yield node[key]
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        yield from node.get(key, [])


def _undescribed(node: dict[str, Any], where: str) -> Iterator[str]:
    """Dotted names of the properties under ``node`` (at any depth) without a description."""
    for name, prop in node.get("properties", {}).items():
        if "description" not in prop:  # beside a $ref too: pydantic puts it there
            yield f"{where}.{name}"
        yield from _undescribed(prop, f"{where}.{name}")
    for sub in _subschemas(node):
        yield from _undescribed(sub, where)


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def test_every_component_schema_and_property_has_a_description(schema: dict[str, Any]) -> None:
    components: dict[str, Any] = schema["components"]["schemas"]
    assert len(components) > 30  # the walk sees the real schema
    missing = []
    for name, component in components.items():
        if not component.get("description"):
            missing.append(f"{name} (the schema itself)")
        missing += _undescribed(component, name)
    assert not missing, "no description in the OpenAPI schema:\n" + "\n".join(missing)


def test_every_parameter_and_operation_is_described(schema: dict[str, Any]) -> None:
    missing = []
    for where, operation in _operations(schema):
        if not operation.get("description"):
            missing.append(f"{where} (its docstring)")
        missing += [
            f"{where} parameter {p['name']}"
            for p in operation.get("parameters", [])
            if not p.get("description")
        ]
        body = operation.get("requestBody", {})
        for media, content in body.get("content", {}).items():
            missing += _undescribed(content["schema"], f"{where} {media} body")
    assert not missing, "no description in the OpenAPI schema:\n" + "\n".join(missing)


def _body_examples(content: dict[str, Any], components: dict[str, Any]) -> list[Any]:
    """The examples the docs show for one media type of a request body."""
    examples = [e["value"] for e in content.get("examples", {}).values()]
    body = content["schema"]
    examples += body.get("examples", [])
    for alternative in [body, *body.get("oneOf", [])]:
        if "$ref" in alternative:
            examples += components[alternative["$ref"].removeprefix(_REF)].get("examples", [])
    return examples


def test_every_request_body_has_an_example(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    bodies = 0
    for where, operation in _operations(schema):
        for media, content in operation.get("requestBody", {}).get("content", {}).items():
            bodies += 1
            assert _body_examples(content, components), f"{where} {media}: no example"
            for alternative in content["schema"].get("oneOf", []):
                name = alternative["$ref"].removeprefix(_REF)
                assert components[name].get("examples"), f"{where} {media}: no {name} example"
    assert bodies >= 5


@pytest.mark.parametrize("name", sorted(EXAMPLE_MODELS))
def test_the_component_examples_validate(schema: dict[str, Any], name: str) -> None:
    examples = schema["components"]["schemas"][name].get("examples")
    assert examples, f"{name} shows no example"
    for example in examples:
        EXAMPLE_MODELS[name].model_validate(example)


def test_only_checked_components_carry_examples(schema: dict[str, Any]) -> None:
    with_examples = {n for n, c in schema["components"]["schemas"].items() if "examples" in c}
    assert with_examples <= set(EXAMPLE_MODELS), "add them to EXAMPLE_MODELS"


def test_the_submit_examples_are_working_jobs_of_every_kind(schema: dict[str, Any]) -> None:
    """Each example of `POST /v1/jobs` passes the checks the API makes before storing a job."""
    content = schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    examples = {name: e["value"] for name, e in content["examples"].items()}
    assert set(examples) == {"circuits", "train", "minimize"}
    settings = Settings()
    for kind, example in examples.items():
        job = TypeAdapter(AnyJob).validate_python(example)
        assert job.kind == kind
        if isinstance(job, CircuitsJob):
            validate_job(job, settings)
        else:
            build_setup(job, settings.max_qubits(job.pool))


def test_the_dataset_upload_example_parses(schema: dict[str, Any]) -> None:
    content = schema["paths"]["/v1/datasets"]["post"]["requestBody"]["content"]["text/csv"]
    (example,) = _body_examples(content, schema["components"]["schemas"])
    data = parse_csv(example, "label")
    assert data.rows > 0 and len(data.classes) >= 2
