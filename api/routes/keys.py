"""/v1/keys: API keys, created and revoked by an admin. A key is shown once, at creation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Admin, SessionDep
from qorchestra.apikeys import generate_key, hash_key, key_prefix
from qorchestra.store import repository as repo
from qorchestra.store.models import ApiKey

router = APIRouter(prefix="/v1/keys", tags=["keys"])

Scope = Annotated[str, Field(pattern="^(read|submit|admin)$")]


class KeyCreate(BaseModel):
    """A key to create."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"tenant": "research", "scopes": ["read", "submit"], "name": "ci runner"}]
        }
    )

    tenant: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="The tenant the key acts for; created with default quotas if new.",
    )
    scopes: list[Scope] = Field(
        default_factory=lambda: ["read", "submit"],
        min_length=1,
        max_length=3,
        description="`read` (GET routes, WatchJob), `submit` (submit, cancel, predict, upload), "
        "`admin` (keys, tenants, every tenant's jobs).",
    )
    name: str = Field("", max_length=200, description="A label for people.")


class KeyPublic(BaseModel):
    """A key without its secret: only its first characters are ever shown again."""

    id: str = Field(description="The key's id (a UUID), for revoking it.")
    prefix: str = Field(
        description="The key's first 10 characters, to tell it apart in lists and logs."
    )
    tenant: str = Field(description="The tenant the key acts for.")
    scopes: list[str] = Field(description="Its scopes, of `read`, `submit` and `admin`.")
    name: str = Field(description="The label given on creation (may be empty).")
    created_at: datetime = Field(description="When it was created (UTC).")
    revoked_at: datetime | None = Field(
        description="When it was revoked (UTC); null while it is valid."
    )

    @classmethod
    def of(cls, row: ApiKey) -> KeyPublic:
        return cls(
            id=row.id,
            prefix=row.prefix,
            tenant=row.tenant,
            scopes=list(row.scopes),
            name=row.name,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )


class KeyCreated(KeyPublic):
    """A new key, with the secret: shown this once, stored only as a hash."""

    key: str = Field(description="The key to send as `Authorization: Bearer <key>`.")


class KeysPublic(BaseModel):
    """Every API key, revoked ones included."""

    data: list[KeyPublic] = Field(description="The keys, without their secrets.")
    count: int = Field(description="Keys in `data`.")


@router.post("", status_code=201, response_model=KeyCreated, summary="Create an API key")
def create_key(body: KeyCreate, _admin: Admin, session: SessionDep) -> KeyCreated:
    """A new key for a tenant; the answer holds the key, which is not shown again."""
    key = generate_key()
    with session.begin():
        row = repo.add_api_key(
            session,
            key_id=str(uuid.uuid4()),
            key_hash=hash_key(key),
            prefix=key_prefix(key),
            tenant=body.tenant,
            scopes=sorted(set(body.scopes)),
            name=body.name,
        )
        assert row is not None  # 256 random bits do not collide
        public = KeyPublic.of(row)
    return KeyCreated(**public.model_dump(), key=key)


@router.get("", response_model=KeysPublic, summary="List API keys")
def list_keys(_admin: Admin, session: SessionDep) -> KeysPublic:
    """Every key, revoked ones included, by prefix (never the secret)."""
    rows = repo.list_api_keys(session)
    return KeysPublic(data=[KeyPublic.of(r) for r in rows], count=len(rows))


@router.delete("/{key_id}", response_model=KeyPublic, summary="Revoke an API key")
def revoke_key(
    key_id: Annotated[str, Path(max_length=36, description="The key's id.")],
    _admin: Admin,
    session: SessionDep,
) -> KeyPublic:
    """Revoke a key at once: every later call with it gets 401. Revoking twice is fine."""
    with session.begin():
        row = repo.revoke_api_key(session, key_id, now=datetime.now(UTC))
        return KeyPublic.of(row)
