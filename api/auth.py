"""Who is calling: API keys turned into a Principal (tenant and scopes), for REST and gRPC.

Keys are looked up by their SHA-256; a missing, unknown or revoked key is refused the same way.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from cachetools import TTLCache
from sqlalchemy.orm import Session

from qorchestra.apikeys import hash_key, key_prefix
from qorchestra.config import Settings
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory
from qorchestra.store.models import ApiKey

logger = logging.getLogger(__name__)

#: Tenant, scopes and name of the configured admin key (``QORCH_ADMIN_KEY``): the API
#: registers it at start, and ``POST /v1/keys/rotate-admin`` replaces it. One at a time is
#: valid; admin keys made through ``POST /v1/keys`` are other keys, never revoked by either.
ADMIN_TENANT = "admin"
ADMIN_SCOPES = ("admin", "read", "submit")
CONFIGURED_KEY_NAME = "QORCH_ADMIN_KEY"


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
    """The principal of an unrevoked key, or None (asks the store every time)."""
    return _principal_with_hash(sessions, hash_key(key))


def _principal_with_hash(sessions: SessionFactory, key_hash: str) -> Principal | None:
    with sessions() as session:
        row = repo.key_by_hash(session, key_hash)
        if row is None:
            return None
        return Principal(row.id, row.prefix, row.tenant, frozenset(row.scopes))


class KeyCache:
    """The API keys this process accepted lately, each kept ``ttl_s``: under a burst, a key
    costs one store lookup a second instead of one per request (the lookup was a third of a
    submission's CPU in the API). Only accepted keys are kept; an unknown key is looked up
    every time, so a key made a moment ago works at once.

    A key revoked through this process (``DELETE /v1/keys/{id}``, a rotation of the admin
    key) is forgotten at once. Revoked through another API process, it is still accepted here
    for at most ``ttl_s``; open gRPC streams end within ``KEY_CHECK_S`` either way. ``ttl_s``
    0 keeps nothing.

    Owned by the API app (``app.state.keys``); thread-safe."""

    def __init__(
        self,
        sessions: SessionFactory,
        ttl_s: float,
        max_keys: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._lock = threading.Lock()  # guards both fields below
        self._accepted: TTLCache[str, Principal] | None = (
            TTLCache(max_keys, ttl_s, timer=clock) if ttl_s > 0 else None
        )
        # Bumped by forget(): a lookup that started before a revocation must not keep its
        # (then stale) answer.
        self._generation = 0

    def principal(self, key: str) -> Principal | None:
        """The principal of an unrevoked key, or None. Queries Postgres on a miss: call it
        from a thread, not the event loop."""
        key_hash = hash_key(key)
        if self._accepted is None:
            return _principal_with_hash(self._sessions, key_hash)
        with self._lock:
            known = self._accepted.get(key_hash)
            generation = self._generation
        if known is not None:
            return known
        principal = _principal_with_hash(self._sessions, key_hash)
        if principal is not None:
            with self._lock:
                if generation == self._generation:
                    self._accepted[key_hash] = principal
        return principal

    def forget(self, key_ids: Iterable[str]) -> None:
        """Drop the keys with these ids (just revoked): their next use asks the store."""
        gone = set(key_ids)
        with self._lock:
            self._generation += 1
            if self._accepted is None:
                return
            for key_hash, principal in list(self._accepted.items()):
                if principal.key_id in gone:
                    del self._accepted[key_hash]


def replace_configured_admin_key(
    session: Session, key: str, *, name: str = CONFIGURED_KEY_NAME
) -> tuple[ApiKey, list[ApiKey]]:
    """Make ``key`` the configured admin key: store its hash and revoke every other valid
    configured admin key (keys made through ``POST /v1/keys`` stay). Returns the new key's row
    and the rows revoked. The caller owns the transaction; ``key`` must be new."""
    repo.lock_configured_admin_key(session)
    revoked = repo.revoke_configured_admin_keys(session, now=datetime.now(UTC))
    row = repo.add_api_key(
        session,
        key_id=str(uuid.uuid4()),
        key_hash=hash_key(key),
        prefix=key_prefix(key),
        tenant=ADMIN_TENANT,
        scopes=list(ADMIN_SCOPES),
        name=name,
        configured=True,
    )
    if row is None:
        raise ValueError("the new admin key exists already")
    logger.info(
        "configured admin key %s... registered; revoked: %s",
        row.prefix,
        ", ".join(f"{old.prefix}..." for old in revoked) or "none",
    )
    return row, revoked


def register_admin_key(sessions: SessionFactory, settings: Settings) -> None:
    """Make ``QORCH_ADMIN_KEY`` the configured admin key (only its hash is stored).

    A new key replaces the configured admin key of the previous start (or of a rotation),
    which is revoked; admin keys made through the API stay. The key of the previous start, or
    one any replica registered already, is left as it is: replicas starting with the same key
    change nothing, and a replica starting with a key revoked meanwhile (rotated, or replaced
    by a newer start) neither revives it nor revokes the newer one (it logs an error). Starts
    and rotations take turns under a lock, so at most one configured admin key is valid: after
    a start with a new or the current key, that one."""
    key = settings.admin_key.get_secret_value()
    if not key:
        logger.warning("QORCH_ADMIN_KEY is not set: create keys with an existing admin key")
        return
    shown = key_prefix(key)
    with sessions() as session, session.begin():
        repo.lock_configured_admin_key(session)
        row = repo.api_key_with_hash(session, hash_key(key))
        if row is None:
            replace_configured_admin_key(session, key)
        elif row.revoked_at is not None:
            logger.error(
                "QORCH_ADMIN_KEY (%s...) was revoked, by a rotation or a start with a newer key: "
                "it is refused; put the current admin key in QORCH_ADMIN_KEY",
                shown,
            )
        elif not row.configured:
            logger.warning(
                "QORCH_ADMIN_KEY (%s...) is a key made through the API: it keeps its tenant and "
                "scopes and does not replace the configured admin key",
                shown,
            )
        else:  # registered before (by another replica, or the start before): others go
            now = datetime.now(UTC)
            for old in repo.revoke_configured_admin_keys(session, now=now, keep=row.id):
                logger.info("configured admin key %s... revoked: replaced", old.prefix)
