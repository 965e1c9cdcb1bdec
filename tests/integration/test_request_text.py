"""Text a request carries that cannot be UTF-8 (a lone surrogate, which JSON's ``\\ud800``
escape can spell) is refused with a 422 naming the field, never a 500. A real API over HTTP,
real Postgres and broker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from qorch.samples import demo_job
from tests.support.api import RunningApi, running_api

pytestmark = pytest.mark.integration

CSV = "x,y,label\n0.1,0.9,a\n0.8,0.2,b\n0.2,0.7,a\n0.9,0.1,b\n"
SURROGATE = "\\ud800"  # as JSON spells it: json.dumps would escape the backslash


@pytest.fixture(scope="module")
def api(database_url: str, kafka_bootstrap: str) -> Iterator[RunningApi]:
    with running_api(database_url, kafka_bootstrap) as running:
        running.keys["acme"] = running.new_key("text-acme", ["read", "submit"])
        yield running


def _post_job(api: RunningApi, spec: dict[str, Any], placeholder: str) -> Any:
    """POST ``spec`` with ``placeholder`` replaced by a lone surrogate, raw."""
    body = json.dumps(spec).replace(placeholder, SURROGATE)
    assert SURROGATE in body
    return api.call(
        "POST",
        "/v1/jobs",
        api.keys["acme"],
        content=body.encode(),
        headers={"Content-Type": "application/json"},
    )


@pytest.mark.parametrize("dataset_id", ["PLACEHOLDER", "a-PLACEHOLDER-b"])
def test_a_lone_surrogate_in_dataset_id_is_a_422_naming_the_field(
    api: RunningApi, dataset_id: str
) -> None:
    spec = {"kind": "train", "data": {"dataset_id": dataset_id}, "training": {"epochs": 1}}
    answer = _post_job(api, spec, "PLACEHOLDER")
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["detail"]
    assert error["loc"] == ["body", "data", "dataset_id"]


def test_a_lone_surrogate_in_a_job_name_is_a_422_naming_the_field(api: RunningApi) -> None:
    spec = demo_job(2)
    spec["name"] = "PLACEHOLDER"
    answer = _post_job(api, spec, "PLACEHOLDER")
    assert answer.status_code == 422, answer.text
    assert [e["loc"] for e in answer.json()["detail"]] == [["body", "name"]]


def test_a_real_dataset_id_still_works(api: RunningApi) -> None:
    uploaded = api.call(
        "POST", "/v1/datasets", api.keys["acme"], content=CSV, headers={"Content-Type": "text/csv"}
    )
    assert uploaded.status_code == 201, uploaded.text
    dataset_id = uploaded.json()["id"]
    spec = {"kind": "train", "data": {"dataset_id": dataset_id}, "training": {"epochs": 1}}
    submitted = api.call("POST", "/v1/jobs", api.keys["acme"], json=spec)
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    # no orchestrator runs it here; finish it, so no planner of another module does
    assert api.call("POST", f"/v1/jobs/{job_id}/cancel", api.admin_key).status_code == 200
    unknown = dict(spec, data={"dataset_id": "no-such-dataset"})
    refused = api.call("POST", "/v1/jobs", api.keys["acme"], json=unknown)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "data", "dataset_id"]
