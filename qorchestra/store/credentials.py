"""Node credentials and the control plane's signing key, as stored.

A node credential is enrolled for one pool and may be revoked; only its public key is kept.
Receivers look a credential up in the transaction that applies the message it signed, under a
share lock: a revocation that committed before is seen, and one that commits meanwhile waits
for that transaction, so no message counts after its credential's revocation returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from threading import Lock
from typing import TypeVar

from google.protobuf.message import Message as ProtoMessage
from sqlalchemy import select
from sqlalchemy.orm import Session

from proto.qorch.v1 import signed_pb2
from qorchestra.signing import (
    ControlPlaneSigner,
    Rejected,
    Rejection,
    new_node_credential,
    verify_node,
)
from qorchestra.store.db import SessionFactory, session_scope
from qorchestra.store.models import ControlPlaneKey, NodeCredentialRow
from qorchestra.store.repository import NotFound

M = TypeVar("M", bound=ProtoMessage)

_signers: dict[str, ControlPlaneSigner] = {}
_signers_lock = Lock()


def enroll_node(session: Session, pool: str, name: str = "") -> tuple[NodeCredentialRow, str]:
    """A new credential for an agent of ``pool``, and its token (the only copy of the
    private key: show it once)."""
    made = new_node_credential()
    row = NodeCredentialRow(id=made.id, pool=pool, name=name, public_key=made.public_key)
    session.add(row)
    session.flush()
    session.refresh(row)
    return row, made.token


def list_node_credentials(
    session: Session, pool: str | None = None, *, revoked: bool = False
) -> Sequence[NodeCredentialRow]:
    """Credentials by pool then creation; revoked ones only when asked for."""
    query = select(NodeCredentialRow).order_by(NodeCredentialRow.pool, NodeCredentialRow.created_at)
    if pool:
        query = query.where(NodeCredentialRow.pool == pool)
    if not revoked:
        query = query.where(NodeCredentialRow.revoked_at.is_(None))
    return list(session.execute(query).scalars())


def revoke_node_credential(
    session: Session, credential_id: str, *, now: datetime
) -> NodeCredentialRow:
    """Revoke a credential (NotFound when there is none); revoking twice keeps the first time."""
    row = session.get(NodeCredentialRow, credential_id, with_for_update=True)
    if row is None:
        raise NotFound(f"node credential {credential_id} not found")
    if row.revoked_at is None:
        row.revoked_at = now
    return row


def revoke_named(session: Session, name: str, *, now: datetime) -> int:
    """Revoke every active credential called ``name``; returns how many."""
    rows = session.execute(
        select(NodeCredentialRow)
        .where(NodeCredentialRow.name == name, NodeCredentialRow.revoked_at.is_(None))
        .with_for_update()
    ).scalars()
    count = 0
    for row in rows:
        row.revoked_at = now
        count += 1
    return count


def signing_credential(session: Session, credential_id: str) -> NodeCredentialRow | None:
    """The credential a message claims, share-locked until the transaction ends; None when
    unknown."""
    return session.execute(
        select(NodeCredentialRow)
        .where(NodeCredentialRow.id == credential_id)
        .with_for_update(read=True)
    ).scalar_one_or_none()


def load_control_plane_signer(factory: SessionFactory) -> ControlPlaneSigner:
    """The control plane's signer, read in a transaction of its own."""
    with session_scope(factory) as session:
        return control_plane_signer(session)


def control_plane_signer(session: Session) -> ControlPlaneSigner:
    """The control plane's signer (made by the migrations; kept for the process's life)."""
    url = str(session.get_bind().engine.url)
    with _signers_lock:
        signer = _signers.get(url)
    if signer is None:
        key = session.execute(
            select(ControlPlaneKey).order_by(ControlPlaneKey.created_at).limit(1)
        ).scalar_one()
        signer = ControlPlaneSigner(key.id, key.secret)
        with _signers_lock:
            _signers[url] = signer
    return signer


def verify_node_message(
    session: Session, envelope: signed_pb2.Signed, message_type: type[M]
) -> tuple[M, NodeCredentialRow]:
    """The message a node signed, and the credential that signed it (share-locked); Rejected
    when the signer is unknown or revoked or the signature does not verify."""
    credential = signing_credential(session, envelope.signer[:32])
    if credential is None:
        raise Rejected(Rejection.UNKNOWN_SIGNER, envelope.signer)
    if credential.revoked_at is not None:
        raise Rejected(Rejection.REVOKED, envelope.signer)
    return verify_node(envelope, message_type, credential.public_key), credential
