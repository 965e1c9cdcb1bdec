"""Fixtures for the real Postgres and the real Kafka-protocol broker.

``QORCH_TEST_DATABASE_URL`` / ``QORCH_TEST_KAFKA_BOOTSTRAP`` point at existing servers; otherwise
the embedded ones are started once per test session on free loopback ports and stopped after.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from qorch.embedded import EmbeddedBroker, EmbeddedPostgres
from qorchestra.config import Settings
from tests.support.databases import database_of_its_own
from tests.support.settings import enrolled, make_settings


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """URL of a migrated Postgres database."""
    from qorchestra.store.migrate import upgrade

    url = os.environ.get("QORCH_TEST_DATABASE_URL")
    if url:
        upgrade(url)
        yield url
        return
    with EmbeddedPostgres() as pg:
        upgrade(pg.url)
        yield pg.url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a Kafka-protocol broker."""
    bootstrap = os.environ.get("QORCH_TEST_KAFKA_BOOTSTRAP")
    if bootstrap:
        yield bootstrap
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap


@pytest.fixture
def fresh_database(database_url: str) -> Iterator[str]:
    """A migrated database of its own in the session's Postgres server, dropped afterwards."""
    with database_of_its_own(database_url) as fresh:
        yield fresh


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> Settings:
    """Settings with the broker and a fresh topic prefix (no database)."""
    return make_settings(kafka_bootstrap=kafka_bootstrap)


@pytest.fixture
def settings(database_url: str, kafka_bootstrap: str) -> Settings:
    """Settings with the migrated database, the broker and a fresh topic prefix whose topics
    exist (producers do not create topics: a send to a missing one waits for its timeout),
    and a node credential enrolled for ``local-sv``."""
    from qorchestra.kafka import ensure_topics

    settings = make_settings(database_url=database_url, kafka_bootstrap=kafka_bootstrap)
    ensure_topics(settings, ["local-sv", "local-dm"])
    return enrolled(settings)
