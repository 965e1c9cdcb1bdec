"""What a report of quantum tasks must look like before anything records or acts on it, and how
its envelope says what it is (qorchestra/quantum_tasks.py, qorchestra/signing.py)."""

from __future__ import annotations

import pytest

from proto.qorch.v1 import fragments_pb2 as pb
from proto.qorch.v1 import signed_pb2
from qorchestra.config import Settings, creates_quantum_tasks
from qorchestra.quantum_tasks import (
    MAX_TASKS,
    cancellable_arns,
    check_device,
    checked_tasks,
)
from qorchestra.signing import (
    NodeSigner,
    Rejected,
    Rejection,
    body_type,
    new_node_credential,
    open_envelope,
    verify_node,
)

ARN = "arn:aws:braket:us-west-2:123456789012:quantum-task/5b1f8d3c-0c52-4c6e-9d0e-0c1e2f3a4b5c"
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
TOKEN = "e527c9cf-5a0b-5abe-a810-bb3f726da274"


def task(**changes: object) -> pb.QuantumTask:
    values: dict[str, object] = {
        "index": 0,
        "arn": ARN,
        "client_token": TOKEN,
        "generation": 1,
        "status": "QUEUED",
    }
    values.update(changes)
    return pb.QuantumTask(**values)  # type: ignore[arg-type]


def test_braket_values_pass() -> None:
    second = task(index=1, arn=ARN.replace("5b1f", "6c2f"), status="", generation=2)
    checked = checked_tasks([task(), second])
    assert [(t.index, t.arn, t.client_token, t.generation, t.status) for t in checked] == [
        (0, ARN, TOKEN, 1, "QUEUED"),
        (1, second.arn, TOKEN, 2, ""),
    ]
    check_device(SV1, SV1)
    check_device("arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet", None)


@pytest.mark.parametrize(
    ("tasks", "why"),
    [
        ([], "without tasks"),
        ([task(arn="arn:aws:s3:::bucket/key")], "not a Braket quantum task ARN"),
        ([task(arn=ARN + "\n")], "not a Braket quantum task ARN"),
        ([task(arn=ARN.replace("123456789012", "1234"))], "not a Braket quantum task ARN"),
        ([task(client_token="")], "not a client token"),
        ([task(client_token="x" * 65)], "not a client token"),
        ([task(client_token="é")], "not a client token"),
        ([task(status="DONE")], "not a Braket task state"),
        ([task(generation=0)], "generation 0"),
        ([task(generation=5000)], "generation 5000"),
        ([task(index=MAX_TASKS)], "task index"),
        ([task(), task(arn=ARN.replace("5b1f", "6c2f"))], "reported twice"),
        ([task(), task(index=1)], "reported twice"),
    ],
)
def test_what_braket_would_not_give_is_refused(tasks: list[pb.QuantumTask], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        checked_tasks(tasks)


def test_the_device_must_be_a_braket_device_and_the_pools() -> None:
    with pytest.raises(ValueError, match="not a Braket device ARN"):
        check_device("arn:aws:ec2:::instance/i-1", None)
    with pytest.raises(ValueError, match="the pool's device"):
        check_device(SV1.replace("sv1", "dm1"), SV1)


def test_a_cancel_request_names_task_arns_only() -> None:
    assert cancellable_arns([task(), task(index=1)]) == [ARN]
    with pytest.raises(ValueError):
        cancellable_arns([task(arn="*")])


def test_only_aws_pools_create_quantum_tasks_and_have_a_cancel_topic() -> None:
    assert creates_quantum_tasks("aws-sv1") and creates_quantum_tasks("aws-garnet")
    assert not any(creates_quantum_tasks(p) for p in ("local-sv", "local-dm", "emu-garnet"))
    assert Settings(topic_prefix="p.").cancel_topic("aws-sv1") == "p.fragments.aws-sv1.cancel"


def test_an_envelope_names_its_type_and_cannot_lie_about_it() -> None:
    made = new_node_credential()
    signer = NodeSigner(made.token)
    report = pb.FragmentSubmitted(fragment_id="f", job_id="j", attempt=1, tasks=[task()])
    envelope = open_envelope(signer.seal(report))
    kinds = [pb.FragmentResult, pb.FragmentSubmitted]
    assert envelope.type == "qorch.v1.FragmentSubmitted"
    assert body_type(envelope, kinds) is pb.FragmentSubmitted
    assert verify_node(envelope, pb.FragmentSubmitted, made.public_key) == report

    # no type: the topic's first (results from agents that do not name it)
    untyped = signed_pb2.Signed(body=envelope.body, signer=envelope.signer, signature=b"s")
    assert body_type(untyped, kinds) is pb.FragmentResult
    # a report that claims to be a result fails as one: the signature covers the type
    claimed = signed_pb2.Signed()
    claimed.CopyFrom(envelope)
    claimed.type = "qorch.v1.FragmentResult"
    with pytest.raises(Rejected) as info:
        verify_node(claimed, body_type(claimed, kinds), made.public_key)
    assert info.value.reason == Rejection.BAD_SIGNATURE
    claimed.type = "qorch.v1.Heartbeat"
    with pytest.raises(Rejected) as info:
        body_type(claimed, kinds)
    assert info.value.reason == Rejection.MALFORMED
