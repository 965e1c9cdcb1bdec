"""Fixtures of the integration tests: sessions on the shared test database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, delete

from qorchestra.store.db import SessionFactory, make_engine, make_session_factory, session_scope
from qorchestra.store.models import OutboxMessage


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the shared test database, disposed after the module."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> SessionFactory:
    """Sessions on the shared test database, with an empty outbox: the relay publishes every
    pending row, and rows other tests left for their (now gone) topics are not this test's."""
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        session.execute(delete(OutboxMessage))
    return factory
