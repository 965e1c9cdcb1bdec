"""Signed envelopes and dispatch nonces (qorchestra/signing.py): pure, no broker or store."""

from __future__ import annotations

import secrets

import pytest

from proto.qorch.v1 import fragments_pb2 as pb
from proto.qorch.v1 import jobs_pb2, nodes_pb2, signed_pb2
from qorchestra.signing import (
    ControlPlaneSigner,
    NodeSigner,
    Rejected,
    Rejection,
    new_node_credential,
    open_envelope,
    verify_node,
    with_nonce,
)


def result() -> pb.FragmentResult:
    message = pb.FragmentResult(fragment_id="f", job_id="j", attempt=1, nonce="n")
    message.success.results.add().expectations.values.append(0.5)
    return message


def reason(call: object) -> Rejection:
    with pytest.raises(Rejected) as caught:
        call()  # type: ignore[operator]
    return caught.value.reason


def test_a_node_signature_verifies_under_its_public_key_only() -> None:
    made = new_node_credential()
    signer = NodeSigner(made.token)
    assert signer.credential_id == made.id
    envelope = open_envelope(signer.seal(result()))
    assert envelope.signer == made.id
    assert verify_node(envelope, pb.FragmentResult, made.public_key) == result()
    other = new_node_credential()
    assert reason(lambda: verify_node(envelope, pb.FragmentResult, other.public_key)) == (
        Rejection.BAD_SIGNATURE
    )


def test_a_signed_message_cannot_pass_for_another_type_or_be_changed() -> None:
    made = new_node_credential()
    signer = NodeSigner(made.token)
    heartbeat = open_envelope(signer.seal(nodes_pb2.Heartbeat(node_id="f", pool="j")))
    # the same bytes would decode as a result; the signature covers the type, so they do not
    assert reason(lambda: verify_node(heartbeat, pb.FragmentResult, made.public_key)) == (
        Rejection.BAD_SIGNATURE
    )
    envelope = open_envelope(signer.seal(result()))
    envelope.body = envelope.body.replace(b"n", b"m")
    assert reason(lambda: verify_node(envelope, pb.FragmentResult, made.public_key)) == (
        Rejection.BAD_SIGNATURE
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\xff\xfe", Rejection.MALFORMED),
        (b"", Rejection.UNSIGNED),
        (signed_pb2.Signed(body=b"x", signer="nc_1").SerializeToString(), Rejection.UNSIGNED),
        (signed_pb2.Signed(body=b"x", signature=b"s").SerializeToString(), Rejection.UNSIGNED),
        (
            jobs_pb2.JobEvent(
                job_id="j", seq=2, status=jobs_pb2.JOB_STATUS_SUCCEEDED
            ).SerializeToString(),
            Rejection.UNSIGNED,
        ),
    ],
)
def test_what_is_not_a_signed_envelope_is_refused(raw: bytes, expected: Rejection) -> None:
    assert reason(lambda: open_envelope(raw)) == expected


@pytest.mark.parametrize(
    "token",
    [
        "",
        "qk_" + "a" * 43,
        "nc_0123456789abcdef",
        "nc_0123456789abcdef." + "a" * 42,
        "nc_0123456789ABCDEF." + "a" * 43,
        "nc_0123456789abcdef." + "a" * 42 + "=",
    ],
)
def test_a_malformed_credential_is_refused_without_quoting_it(token: str) -> None:
    with pytest.raises(ValueError) as caught:
        NodeSigner(token)
    if token:
        assert token not in str(caught.value)


def test_events_verify_only_under_the_control_plane_secret() -> None:
    signer = ControlPlaneSigner("cp_1", secrets.token_bytes(32))
    event = jobs_pb2.JobEvent(job_id="j", seq=2, status=jobs_pb2.JOB_STATUS_SUCCEEDED)
    assert signer.open(signer.seal(event), jobs_pb2.JobEvent) == event
    impostor = ControlPlaneSigner("cp_1", secrets.token_bytes(32))
    assert reason(lambda: signer.open(impostor.seal(event), jobs_pb2.JobEvent)) == (
        Rejection.BAD_SIGNATURE
    )
    stranger = ControlPlaneSigner("cp_2", secrets.token_bytes(32))
    assert reason(lambda: signer.open(stranger.seal(event), jobs_pb2.JobEvent)) == (
        Rejection.UNKNOWN_SIGNER
    )
    node = NodeSigner(new_node_credential().token)
    assert reason(lambda: signer.open(node.seal(event), jobs_pb2.JobEvent)) == (
        Rejection.UNKNOWN_SIGNER
    )
    with pytest.raises(ValueError):
        ControlPlaneSigner("cp_3", b"short")


def test_a_nonce_is_fixed_per_dispatch_and_new_for_each_attempt() -> None:
    signer = ControlPlaneSigner("cp_1", secrets.token_bytes(32))
    first = signer.nonce("f", 1)
    assert first == signer.nonce("f", 1)  # a resend of the same attempt
    assert len({first, signer.nonce("f", 2), signer.nonce("g", 1)}) == 3
    assert signer.answers("f", 1, first)
    assert not signer.answers("f", 2, first)
    assert not signer.answers("f", 1, "")
    other = ControlPlaneSigner("cp_1", secrets.token_bytes(32))
    assert other.nonce("f", 1) != first  # unguessable without the secret


def test_with_nonce_sets_the_nonce_of_a_serialized_fragment() -> None:
    fragment = pb.Fragment(fragment_id="f", job_id="j", attempt=1, program="OPENQASM 3.0;")
    fragment.bindings.add().values["a"] = 0.5
    sealed = pb.Fragment.FromString(with_nonce(fragment.SerializeToString(), "abc"))
    assert sealed.nonce == "abc"
    sealed.nonce = ""
    assert sealed == fragment
