"""Fault tests: the whole stack as real processes, with real signals and real outages.

Each test gets its own database (created in the session's Postgres server, or its own embedded
Postgres when the test stops Postgres) and its own topic prefix, so a killed or restarted part
never meets another test's jobs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from qorch.client import QorchClient
from qorch.stack import Stack, StackOptions
from tests.support.faults import FAULT_SETTINGS, FaultRun, StackFactory
from tests.support.settings import make_settings


@pytest.fixture
def fault_stack(tmp_path: Path) -> StackFactory:
    """``with fault_stack(**settings) as stack:`` a started stack; logs shown if the test fails.

    ``database_url``/``kafka_bootstrap`` left out start embedded ones owned by the stack (so the
    test may stop them). ``pools`` picks the agents.
    """

    @contextmanager
    def start(pools: list[str] | None = None, **overrides: Any) -> Iterator[Stack]:
        settings = make_settings(**{**FAULT_SETTINGS, **overrides})
        options = StackOptions(
            pools=pools or ["local-sv", "local-sv"],
            log_dir=tmp_path / f"logs-{uuid.uuid4().hex[:6]}",
            free_ports=True,
        )
        stack = Stack(settings, options)
        try:
            stack.start(timeout=180)
            yield stack
        except BaseException:
            for log in sorted(options.log_dir.glob("*.log")):  # type: ignore[union-attr]
                print(f"===== {log.name}\n{log.read_text()[-4000:]}")
            raise
        finally:
            stack.stop()

    return start


@pytest.fixture
def client_for() -> Iterator[Callable[[Stack], QorchClient]]:
    """A client bound to a stack; closed after the test."""
    clients: list[QorchClient] = []

    def make(stack: Stack) -> QorchClient:
        client = QorchClient(stack.api_url, stack.grpc_target, api_key=stack.admin_key)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def fault_run(
    request: pytest.FixtureRequest,
    fault_stack: StackFactory,
    client_for: Callable[[Stack], QorchClient],
) -> FaultRun:
    """``with fault_run(**settings) as (stack, client):`` a started stack and a client.

    The stack uses a fresh database of the session's Postgres and the session's broker;
    ``own_postgres=True``/``own_broker=True`` give it embedded ones of its own instead, which
    the test may stop and start.
    """

    @contextmanager
    def start(
        own_postgres: bool = False, own_broker: bool = False, **overrides: Any
    ) -> Iterator[tuple[Stack, QorchClient]]:
        if not own_postgres:
            overrides.setdefault("database_url", request.getfixturevalue("fresh_database"))
        if not own_broker:
            overrides.setdefault("kafka_bootstrap", request.getfixturevalue("kafka_bootstrap"))
        with fault_stack(**overrides) as stack:
            yield stack, client_for(stack)

    return start
