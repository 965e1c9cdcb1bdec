"""What the API keeps of the store's answer about a submission's pool (``PoolLookup``): a
declared pool is known though the store never heard of it, a pool once known stays known,
whether a live agent serves it is kept for the TTL, and an unknown pool is asked about every
time. The store's own query is tested against Postgres (tests/integration/test_submit_pools.py).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import pytest

from api import admission
from api.admission import PoolLookup
from qorchestra.config import Settings
from qorchestra.store.pools import PoolPresence


class _Session:
    """Counts the transactions a lookup ends."""

    def __init__(self) -> None:
        self.rollbacks = 0

    def rollback(self) -> None:
        self.rollbacks += 1


def _session() -> Any:
    """A session where a ``Session`` goes: the lookup only ends its transaction."""
    return _Session()


class _Store:
    """Stands in for ``pool_presence``: answers what it is set to, and counts the lookups."""

    def __init__(self) -> None:
        self.answers: dict[str, PoolPresence] = {}
        self.lookups: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, _session: Any, pool: str, _since: datetime) -> PoolPresence:
        self.lookups.append(pool)
        self.entered.set()
        assert self.release.wait(10)
        return self.answers.get(pool, PoolPresence(known=False, live=False))


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> _Store:
    fake = _Store()
    monkeypatch.setattr(admission, "pool_presence", fake)
    return fake


SETTINGS = Settings()


def test_a_known_pool_stays_known_and_its_live_answer_is_kept_for_the_ttl(store: _Store) -> None:
    now = [0.0]
    pools, session = PoolLookup(live_ttl_s=1.0, clock=lambda: now[0]), _session()
    store.answers["lab"] = PoolPresence(known=True, live=False)

    assert pools.presence(session, SETTINGS, "lab") == PoolPresence(known=True, live=False)
    assert session.rollbacks == 1  # the lookup's transaction ended at once
    now[0] = 0.9
    assert pools.presence(session, SETTINGS, "lab").live is False
    assert store.lookups == ["lab"]

    now[0] = 1.1  # past the TTL: asked again; the store no longer knowing it does not matter
    store.answers["lab"] = PoolPresence(known=False, live=True)
    assert pools.presence(session, SETTINGS, "lab") == PoolPresence(known=True, live=True)
    assert store.lookups == ["lab", "lab"]


def test_a_declared_pool_is_known_unheard_of_and_an_unknown_one_is_never_kept(
    store: _Store,
) -> None:
    pools, session = PoolLookup(clock=lambda: 0.0), _session()
    assert pools.presence(session, SETTINGS, "local-dm") == PoolPresence(known=True, live=False)
    for _ in range(2):
        assert pools.presence(session, SETTINGS, "nowhere").known is False
    store.answers["nowhere"] = PoolPresence(known=True, live=False)  # enrolled meanwhile
    assert pools.presence(session, SETTINGS, "nowhere").known is True
    assert store.lookups == ["local-dm", "nowhere", "nowhere", "nowhere"]


def test_callers_that_miss_together_share_one_lookup(store: _Store) -> None:
    pools = PoolLookup(clock=lambda: 0.0)
    store.answers["lab"] = PoolPresence(known=True, live=True)
    store.release.clear()  # the first lookup waits until every caller has come
    answers: list[PoolPresence] = []

    def ask() -> None:
        answers.append(pools.presence(_session(), SETTINGS, "lab"))

    first = threading.Thread(target=ask)
    first.start()
    assert store.entered.wait(10)
    others = [threading.Thread(target=ask) for _ in range(5)]
    for thread in others:
        thread.start()
    store.release.set()
    for thread in [first, *others]:
        thread.join(10)
        assert not thread.is_alive()
    assert store.lookups == ["lab"]
    assert answers == [PoolPresence(known=True, live=True)] * 6
