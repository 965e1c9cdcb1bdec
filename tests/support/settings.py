"""Settings for tests: each test its own topic prefix, and short Kafka and polling timeouts."""

from __future__ import annotations

import uuid

from qorchestra.config import Settings


def make_settings(**overrides: object) -> Settings:
    """Settings for a test: a fresh topic prefix, so no test sees another's messages."""
    base: dict[str, object] = {
        "topic_prefix": f"t{uuid.uuid4().hex[:10]}.",
        "kafka_session_timeout_ms": 2000,
        "kafka_heartbeat_interval_ms": 500,
        "heartbeat_interval_s": 0.5,
        "poll_interval_s": 0.05,
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]
