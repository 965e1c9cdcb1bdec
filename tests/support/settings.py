"""Settings for tests: each test its own topic prefix, and short Kafka and polling timeouts."""

from __future__ import annotations

import uuid

from pydantic import SecretStr

from qorchestra.config import Settings
from qorchestra.signing import new_node_credential
from qorchestra.store import credentials
from qorchestra.store.db import make_engine, make_session_factory, session_scope


def make_settings(**overrides: object) -> Settings:
    """Settings for a test: a fresh topic prefix, so no test sees another's messages, and a
    node credential of its own (enrolled nowhere: see ``enrolled``)."""
    base: dict[str, object] = {
        "topic_prefix": f"t{uuid.uuid4().hex[:10]}.",
        "kafka_session_timeout_ms": 2000,
        "kafka_heartbeat_interval_ms": 500,
        "heartbeat_interval_s": 0.5,
        "poll_interval_s": 0.05,
        "node_credential": SecretStr(new_node_credential().token),
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


def enrolled(settings: Settings, pool: str = "local-sv", name: str = "test agent") -> Settings:
    """``settings`` with a node credential enrolled for ``pool`` in their database, as an
    admin enrolls an agent."""
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            _row, token = credentials.enroll_node(session, pool, name)
    finally:
        engine.dispose()
    return settings.model_copy(update={"node_credential": SecretStr(token)})
