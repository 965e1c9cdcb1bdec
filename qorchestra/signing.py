"""Proof of who wrote a message on the bus. Pure functions over standard primitives.

Kafka is a transport, not a trust boundary (DESIGN.md, "Trust"). Every message a receiver acts
on travels in a ``Signed`` envelope (proto/qorch/v1/signed.proto):

- results, task reports and heartbeats are signed by the agent's *node credential*, an Ed25519
  key pair (the envelope names the body's type, since ``results`` carries two). The
  store keeps only the public key; the private key is in the credential token an admin hands
  the agent once (``qorch nodes enroll``), so neither a reader of the database nor of the bus
  can sign as a node;
- job events are signed by the *control plane* (API and orchestrator) with HMAC-SHA256 under a
  secret that only they can read, in Postgres;
- each fragment dispatch carries a nonce, an HMAC of (fragment id, attempt) under the same
  secret: unguessable, fresh for each attempt, and checkable without storing it. A result
  counts only when it answers the nonce of an attempt that was sent.

A signature covers ``"<full message type>\\n" + body``: a signed heartbeat cannot pass for a
result. Nothing here touches the network or the store.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage

from proto.qorch.v1 import fragments_pb2, signed_pb2

#: A node credential's id: ``nc_`` and 16 hex digits. Shown freely (logs, listings).
CREDENTIAL_ID = re.compile(r"nc_[0-9a-f]{16}")
#: A credential token: its id, a dot, and the Ed25519 private key (32 bytes, URL-safe base64).
_TOKEN = re.compile(r"(nc_[0-9a-f]{16})\.([A-Za-z0-9_-]{43})")
#: Longest signer name a receiver looks at (anything longer is logged cut, then dropped).
MAX_SIGNER = 64

M = TypeVar("M", bound=ProtoMessage)


class Rejection(StrEnum):
    """Why a receiver dropped a message: the ``reason`` label of ``qorch_bus_rejected_total``."""

    MALFORMED = "malformed"  # not a Signed envelope, or its body is not the message type
    UNSIGNED = "unsigned"  # no signer or no signature
    UNKNOWN_SIGNER = "unknown_signer"  # no such credential or key
    REVOKED = "revoked"  # the node credential was revoked
    BAD_SIGNATURE = "bad_signature"  # the signature does not verify
    WRONG_POOL = "wrong_pool"  # a node credential of another pool than the fragment's
    WRONG_NONCE = "wrong_nonce"  # answers no dispatch that was sent
    NODE_TAKEN = "node_taken"  # a heartbeat for a node id another credential speaks for


class Rejected(Exception):
    """A message that must not count, with the reason and the identity it claims."""

    def __init__(self, reason: Rejection, signer: str = "", detail: str = "") -> None:
        self.reason = reason
        self.signer = signer[:MAX_SIGNER]
        super().__init__(f"{reason.value}{': ' + detail if detail else ''}")


def _signed_bytes(message_type: str, body: bytes) -> bytes:
    return message_type.encode() + b"\n" + body


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# ---------------------------------------------------------------- node credentials


@dataclass(frozen=True)
class NewCredential:
    """A credential just made: its id, the token for the agent (shown once), the public key."""

    id: str
    token: str
    public_key: bytes


def new_node_credential() -> NewCredential:
    """A fresh Ed25519 node credential."""
    key = Ed25519PrivateKey.generate()
    credential_id = f"nc_{secrets.token_hex(8)}"
    seed = key.private_bytes_raw()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return NewCredential(credential_id, f"{credential_id}.{_b64(seed)}", public)


class NodeSigner:
    """Signs an agent's messages with its node credential."""

    def __init__(self, token: str) -> None:
        """``token`` as ``qorch nodes enroll`` printed it; ValueError (never quoting the
        secret part) when it is not one."""
        match = _TOKEN.fullmatch(token.strip())
        if match is None:
            raise ValueError("not a node credential: expected 'nc_<16 hex digits>.<43 characters>'")
        self.credential_id = match.group(1)
        try:
            seed = base64.urlsafe_b64decode(match.group(2) + "=")
        except (binascii.Error, ValueError) as exc:
            raise ValueError("node credential: the key part is not base64") from exc
        self._key = Ed25519PrivateKey.from_private_bytes(seed)

    def seal(self, message: ProtoMessage) -> bytes:
        """The serialized ``Signed`` envelope of ``message``, naming its type."""
        body = message.SerializeToString()
        full_name = message.DESCRIPTOR.full_name
        signature = self._key.sign(_signed_bytes(full_name, body))
        return signed_pb2.Signed(
            body=body, signer=self.credential_id, signature=signature, type=full_name
        ).SerializeToString()


@lru_cache(maxsize=1024)
def _public_key(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_node(envelope: signed_pb2.Signed, message_type: type[M], public_key: bytes) -> M:
    """The message in ``envelope`` when its signature verifies under ``public_key``; else
    Rejected (bad signature, or a body that is not a ``message_type``)."""
    try:
        _public_key(public_key).verify(
            envelope.signature,
            _signed_bytes(message_type.DESCRIPTOR.full_name, envelope.body),
        )
    except (InvalidSignature, ValueError) as exc:
        raise Rejected(Rejection.BAD_SIGNATURE, envelope.signer) from exc
    return _body(envelope, message_type)


# ---------------------------------------------------------------- envelopes


def open_envelope(raw: bytes | None) -> signed_pb2.Signed:
    """The envelope of a message as read from Kafka; Rejected when there is none or it names
    no signer or carries no signature."""
    try:
        envelope = signed_pb2.Signed.FromString(raw or b"")
    except DecodeError as exc:
        raise Rejected(Rejection.MALFORMED, detail="not a Signed envelope") from exc
    if not envelope.signer or not envelope.signature:
        raise Rejected(Rejection.UNSIGNED, envelope.signer)
    return envelope


def body_type(
    envelope: signed_pb2.Signed, types: Sequence[type[ProtoMessage]]
) -> type[ProtoMessage]:
    """Which of ``types`` the envelope says its body is: the one its ``type`` names, the first
    when it names none; Rejected (malformed) for any other. Only a claim: verifying the
    signature under that type is what proves it."""
    if not envelope.type:
        return types[0]
    for message_type in types:
        if message_type.DESCRIPTOR.full_name == envelope.type:
            return message_type
    raise Rejected(Rejection.MALFORMED, envelope.signer, f"unexpected type {envelope.type[:100]!r}")


def _body(envelope: signed_pb2.Signed, message_type: type[M]) -> M:
    try:
        return message_type.FromString(envelope.body)
    except DecodeError as exc:
        raise Rejected(
            Rejection.MALFORMED, envelope.signer, f"body is not a {message_type.__name__}"
        ) from exc


# ---------------------------------------------------------------- the control plane


class ControlPlaneSigner:
    """Signs and checks job events, and makes dispatch nonces, under the control plane's
    secret (``control_plane_keys`` in the store)."""

    def __init__(self, key_id: str, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the control-plane secret must be at least 32 bytes")
        self.key_id = key_id
        self._secret = secret

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self._secret, data, hashlib.sha256).digest()

    def seal(self, message: ProtoMessage) -> bytes:
        """The serialized ``Signed`` envelope of ``message``."""
        body = message.SerializeToString()
        signature = self._mac(_signed_bytes(message.DESCRIPTOR.full_name, body))
        return signed_pb2.Signed(
            body=body, signer=self.key_id, signature=signature
        ).SerializeToString()

    def open(self, raw: bytes | None, message_type: type[M]) -> M:
        """The message in a Kafka value signed by this control plane; else Rejected."""
        envelope = open_envelope(raw)
        if envelope.signer != self.key_id:
            raise Rejected(Rejection.UNKNOWN_SIGNER, envelope.signer)
        expected = self._mac(_signed_bytes(message_type.DESCRIPTOR.full_name, envelope.body))
        if not hmac.compare_digest(expected, envelope.signature):
            raise Rejected(Rejection.BAD_SIGNATURE, envelope.signer)
        return _body(envelope, message_type)

    def nonce(self, fragment_id: str, attempt: int) -> str:
        """The nonce of one dispatch: the same for a resend of an attempt, new for the next."""
        return self._mac(f"nonce\n{fragment_id}\n{attempt}".encode())[:16].hex()

    def answers(self, fragment_id: str, attempt: int, nonce: str) -> bool:
        """Whether ``nonce`` is the one sent with that attempt of that fragment."""
        return hmac.compare_digest(self.nonce(fragment_id, attempt), nonce)


def with_nonce(fragment: bytes, nonce: str) -> bytes:
    """A serialized Fragment with its nonce set, without parsing it: protobuf parses
    concatenated messages as one, merged, where the last value of a scalar field wins."""
    return fragment + fragments_pb2.Fragment(nonce=nonce).SerializeToString()
