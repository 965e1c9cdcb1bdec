"""The API's cache of accepted keys (``api.auth.KeyCache``) against a real Postgres: a key is
looked up once per ``ttl_s``; a key revoked elsewhere (another API process: here, straight in
the store) is accepted for at most ``ttl_s`` more; one revoked through this process
(``forget``) is refused at once; a key the store does not know is never kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from api.auth import KeyCache
from qorchestra.apikeys import generate_key, hash_key, key_prefix
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def add_key(factory: SessionFactory) -> tuple[str, str]:
    """A new read key of tenant ``cache``: (key, its id)."""
    key, key_id = generate_key(), str(uuid.uuid4())
    with factory() as session, session.begin():
        repo.add_api_key(
            session,
            key_id=key_id,
            key_hash=hash_key(key),
            prefix=key_prefix(key),
            tenant="cache",
            scopes=["read"],
        )
    return key, key_id


def revoke(factory: SessionFactory, key_id: str) -> None:
    with factory() as session, session.begin():
        repo.revoke_api_key(session, key_id, now=datetime.now(UTC))


def test_a_key_revoked_elsewhere_is_accepted_for_at_most_the_ttl(factory: SessionFactory) -> None:
    clock = Clock()
    keys = KeyCache(factory, ttl_s=1.0, clock=clock)
    key, key_id = add_key(factory)
    principal = keys.principal(key)
    assert principal is not None and principal.key_id == key_id and principal.tenant == "cache"

    revoke(factory, key_id)
    clock.now = 0.9
    assert keys.principal(key) == principal  # kept: the store was not asked
    clock.now = 1.0
    assert keys.principal(key) is None  # the ttl ran out: asked, and refused


def test_a_key_revoked_through_this_process_is_refused_at_once(factory: SessionFactory) -> None:
    keys = KeyCache(factory, ttl_s=60.0, clock=Clock())
    key, key_id = add_key(factory)
    other, _ = add_key(factory)
    assert keys.principal(key) is not None and keys.principal(other) is not None

    revoke(factory, key_id)
    keys.forget([key_id])
    assert keys.principal(key) is None
    assert keys.principal(other) is not None  # the others stay


def test_unknown_keys_are_not_kept_and_a_zero_ttl_keeps_nothing(factory: SessionFactory) -> None:
    keys = KeyCache(factory, ttl_s=60.0, clock=Clock())
    assert keys.principal(generate_key()) is None

    uncached = KeyCache(factory, ttl_s=0.0)
    key, key_id = add_key(factory)
    assert uncached.principal(key) is not None
    revoke(factory, key_id)
    assert uncached.principal(key) is None
