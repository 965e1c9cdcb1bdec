"""/v1/keys: API keys, created and revoked by an admin, and the configured admin key rotated.
A key is shown once, at creation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from api.auth import replace_configured_admin_key
from api.deps import Admin, KeysDep, SessionDep
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
    configured: bool = Field(
        description="Whether it is a configured admin key (`QORCH_ADMIN_KEY`, registered by the "
        "API at start, or made by `POST /v1/keys/rotate-admin`): one at a time is valid, and a "
        "new one revokes the one before. Keys made by `POST /v1/keys` are not.",
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
            configured=row.configured,
        )


class KeyCreated(KeyPublic):
    """A new key, with the secret: shown this once, stored only as a hash."""

    key: str = Field(description="The key to send as `Authorization: Bearer <key>`.")


class AdminKeyRotated(KeyCreated):
    """The new configured admin key, with the secret (shown this once), and the configured
    admin keys it replaced, now revoked."""

    revoked: list[KeyPublic] = Field(
        description="The configured admin keys revoked (the caller's, when it called with "
        "`QORCH_ADMIN_KEY`); admin keys made by `POST /v1/keys` are not among them."
    )


#: What ``POST /v1/keys/rotate-admin`` answers (an example for the docs; the keys are made up).
_ROTATED_EXAMPLE = {
    "id": "3f0c8a52-7d1e-4b8e-9a41-2c6f0e5d9b17",
    "prefix": "qk_Vb3kQ9x",
    "tenant": "admin",
    "scopes": ["admin", "read", "submit"],
    "name": "QORCH_ADMIN_KEY (rotate-admin by qk_h7R2mWp...)",
    "created_at": "2026-12-02T10:15:00Z",
    "revoked_at": None,
    "configured": True,
    "key": "qk_Vb3kQ9x<...the rest of the new key, shown only here...>",
    "revoked": [
        {
            "id": "b81d4f0e-2a6c-4f3d-8e57-91c0a7d26e43",
            "prefix": "qk_h7R2mWp",
            "tenant": "admin",
            "scopes": ["admin", "read", "submit"],
            "name": "QORCH_ADMIN_KEY",
            "created_at": "2026-11-30T08:00:00Z",
            "revoked_at": "2026-12-02T10:15:00Z",
            "configured": True,
        }
    ],
}


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


@router.post(
    "/rotate-admin",
    status_code=201,
    response_model=AdminKeyRotated,
    summary="Rotate the configured admin key",
    responses={
        201: {
            "description": "The new admin key (shown this once) and the keys it replaced.",
            "content": {"application/json": {"example": _ROTATED_EXAMPLE}},
        }
    },
)
def rotate_admin_key(admin: Admin, session: SessionDep, keys: KeysDep) -> AdminKeyRotated:
    """Make a new configured admin key and revoke the configured one in use (`QORCH_ADMIN_KEY`,
    usually the caller's): every later call with the old key gets 401. The answer holds the new
    key, which is not shown again: put it in `QORCH_ADMIN_KEY` (the deployment's secret) before
    the API starts next. A start with the old key keeps it revoked, and says so in its log.
    Admin keys made by `POST /v1/keys` stay valid. No request body."""
    key = generate_key()
    with session.begin():
        row, revoked = replace_configured_admin_key(
            session, key, name=f"QORCH_ADMIN_KEY (rotate-admin by {admin.prefix}...)"
        )
        public = KeyPublic.of(row)
        replaced = [KeyPublic.of(r) for r in revoked]
    keys.forget(r.id for r in replaced)
    return AdminKeyRotated(**public.model_dump(), key=key, revoked=replaced)


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
    keys: KeysDep,
) -> KeyPublic:
    """Revoke a key: every later call with it gets 401, through this API process at once and
    through the others within `QORCH_KEY_CACHE_S` (1 s). Revoking twice is fine."""
    with session.begin():
        row = repo.revoke_api_key(session, key_id, now=datetime.now(UTC))
        public = KeyPublic.of(row)
    keys.forget([key_id])
    return public
