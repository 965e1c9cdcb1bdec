"""/v1/nodes/credentials: node credentials, enrolled and revoked by an admin.

An agent signs its results and heartbeats with its credential; the orchestrator counts only what
an unrevoked credential of the fragment's pool signed. The credential (its private key) is in the
answer to enrollment and nowhere else: the store keeps its public key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Admin, SessionDep
from qorchestra.store import credentials
from qorchestra.store.models import NodeCredentialRow

router = APIRouter(prefix="/v1/nodes/credentials", tags=["nodes"])

#: A pool name as it may appear in a topic name (``fragments.<pool>``).
POOL = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class NodeEnroll(BaseModel):
    """A credential to issue for one pool's agent."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"pool": "local-dm", "name": "lab-host-3 agent"}]},
    )

    pool: str = Field(
        max_length=64,
        pattern=POOL,
        description="The pool whose fragments the agent may answer, e.g. `local-sv`.",
    )
    name: str = Field("", max_length=200, description="A label for people.")


class NodeCredentialPublic(BaseModel):
    """A node credential without its secret."""

    id: str = Field(description="The credential's id (`nc_` and 16 hex digits), shown in logs.")
    pool: str = Field(description="The pool its agent may answer for.")
    name: str = Field(description="The label given at enrollment (may be empty).")
    created_at: datetime = Field(description="When it was issued (UTC).")
    revoked_at: datetime | None = Field(
        description="When it was revoked (UTC); null while it is valid."
    )

    @classmethod
    def of(cls, row: NodeCredentialRow) -> NodeCredentialPublic:
        return cls(
            id=row.id,
            pool=row.pool,
            name=row.name,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )


class NodeEnrolled(NodeCredentialPublic):
    """A new credential, with its secret: shown this once."""

    credential: str = Field(
        description="What the agent runs with, as `QORCH_NODE_CREDENTIAL`. Not stored: keep it "
        "in the agent's secret store."
    )


class NodeCredentialsPublic(BaseModel):
    """Node credentials."""

    data: list[NodeCredentialPublic] = Field(description="The credentials, without secrets.")
    count: int = Field(description="Credentials in `data`.")


@router.post("", status_code=201, response_model=NodeEnrolled, summary="Enroll a node agent")
def enroll_node(body: NodeEnroll, _admin: Admin, session: SessionDep) -> NodeEnrolled:
    """Issue a credential for an agent of `pool`. The answer holds the credential, which is not
    shown again: start the agent with `QORCH_NODE_CREDENTIAL` set to it."""
    with session.begin():
        row, token = credentials.enroll_node(session, body.pool, body.name)
        public = NodeCredentialPublic.of(row)
    return NodeEnrolled(**public.model_dump(), credential=token)


@router.get("", response_model=NodeCredentialsPublic, summary="List node credentials")
def list_credentials(
    _admin: Admin,
    session: SessionDep,
    pool: Annotated[str | None, Query(max_length=64, description="Only this pool's.")] = None,
    revoked: Annotated[bool, Query(description="Include revoked credentials.")] = False,
) -> NodeCredentialsPublic:
    """Credentials by pool, then by when they were issued."""
    rows = credentials.list_node_credentials(session, pool, revoked=revoked)
    return NodeCredentialsPublic(data=[NodeCredentialPublic.of(r) for r in rows], count=len(rows))


@router.delete(
    "/{credential_id}", response_model=NodeCredentialPublic, summary="Revoke a node credential"
)
def revoke_credential(
    credential_id: Annotated[
        str, Path(max_length=32, pattern=r"^nc_[0-9a-f]{16}$", description="The credential's id.")
    ],
    _admin: Admin,
    session: SessionDep,
) -> NodeCredentialPublic:
    """Revoke a credential at once: no result or heartbeat it signs counts from the moment
    this answers, not even one already on the bus. Revoking twice is fine."""
    with session.begin():
        row = credentials.revoke_node_credential(session, credential_id, now=datetime.now(UTC))
        return NodeCredentialPublic.of(row)
