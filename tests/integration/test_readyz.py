"""``/readyz`` keeps one Kafka admin client per process, built on first use and again after a
failed check, and names what failed without internals. A real API, Postgres and broker; the
first admin client is pointed at a port where no broker listens."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

import api.routes.health as health
from qorch.embedded import free_port
from qorchestra.config import Settings
from qorchestra.kafka import admin_client
from tests.support.api import RunningApi, running_api

pytestmark = pytest.mark.integration


class Builds:
    """``admin_client`` that counts the clients built; the first one talks to a dead port."""

    def __init__(self) -> None:
        self.count = 0
        self.dead = f"127.0.0.1:{free_port()}"
        self._lock = threading.Lock()

    def __call__(self, settings: Settings) -> AdminClient:
        with self._lock:
            self.count += 1
            first = self.count == 1
        if first:
            settings = settings.model_copy(update={"kafka_bootstrap": self.dead})
        return admin_client(settings)


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Builds:
    builds = Builds()
    monkeypatch.setattr(health, "admin_client", builds)
    return builds


@pytest.fixture
def api(database_url: str, kafka_bootstrap: str, builds: Builds) -> Iterator[RunningApi]:
    with running_api(database_url, kafka_bootstrap) as running:
        yield running


def _ready(api: RunningApi) -> tuple[int, dict[str, Any]]:
    answer = api.call("GET", "/readyz", None)
    return answer.status_code, answer.json()


def test_readiness_keeps_one_admin_client_and_rebuilds_it_after_a_failure(
    api: RunningApi, builds: Builds
) -> None:
    status, body = _ready(api)  # the first client cannot reach a broker
    assert status == 503
    assert body["checks"]["kafka"].startswith("unavailable")
    assert body["checks"]["postgres"] == "ok"
    assert builds.dead not in str(body)  # where it looked stays in the log
    assert builds.count == 1

    answers = [_ready(api) for _ in range(5)]  # the failed one was dropped: a new one, kept
    assert [status for status, _ in answers] == [200] * 5
    assert answers[0][1]["checks"]["kafka"].startswith("ok")
    assert builds.count == 2


def test_concurrent_checks_share_the_client(api: RunningApi, builds: Builds) -> None:
    _ready(api)  # the dead one
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(_ready(api)[0])) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [200] * 8
    assert builds.count == 2
