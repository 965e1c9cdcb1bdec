"""Who is calling: API keys turned into a Principal (tenant and scopes), for REST and gRPC.

Keys are looked up by their SHA-256; a missing, unknown or revoked key is refused the same way.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from qorchestra.apikeys import hash_key, key_prefix
from qorchestra.config import Settings
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory

logger = logging.getLogger(__name__)

#: Tenant of the admin key the API registers from ``QORCH_ADMIN_KEY``.
ADMIN_TENANT = "admin"


@dataclass(frozen=True)
class Principal:
    """The caller: its key (by id and shown prefix), tenant and scopes."""

    key_id: str
    prefix: str
    tenant: str
    scopes: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    @property
    def tenant_filter(self) -> str | None:
        """The tenant whose objects this caller may see; None = all (admin)."""
        return None if self.is_admin else self.tenant

    def allows(self, scope: str) -> bool:
        """Whether the key holds ``scope`` (admin holds every scope)."""
        return self.is_admin or scope in self.scopes


def authenticate(sessions: SessionFactory, key: str) -> Principal | None:
    """The principal of an unrevoked key, or None."""
    with sessions() as session:
        row = repo.key_by_hash(session, hash_key(key))
        if row is None:
            return None
        return Principal(row.id, row.prefix, row.tenant, frozenset(row.scopes))


def register_admin_key(sessions: SessionFactory, settings: Settings) -> None:
    """Store the hash of ``QORCH_ADMIN_KEY`` as an admin key, once (idempotent, race-free)."""
    key = settings.admin_key.get_secret_value()
    if not key:
        logger.warning("QORCH_ADMIN_KEY is not set: create keys with an existing admin key")
        return
    with sessions() as session, session.begin():
        added = repo.add_api_key(
            session,
            key_id=str(uuid.uuid4()),
            key_hash=hash_key(key),
            prefix=key_prefix(key),
            tenant=ADMIN_TENANT,
            scopes=["admin", "read", "submit"],
            name="QORCH_ADMIN_KEY",
        )
    if added is not None:
        logger.info("admin key %s... registered", key_prefix(key))
