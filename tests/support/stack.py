"""The whole stack as separate processes, for the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from qorch.stack import Stack, StackOptions
from tests.support.settings import make_settings


@contextmanager
def running_stack(
    database_url: str,
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
    pools: list[str] | None = None,
    **settings: Any,
) -> Iterator[Stack]:
    """API, orchestrator and agents, one per entry of ``pools`` (default: two of local-sv, one
    of local-dm), on the test database and broker (a fresh topic prefix); afterwards no
    service may have logged a traceback."""
    config = make_settings(database_url=database_url, kafka_bootstrap=kafka_bootstrap, **settings)
    logs = tmp_path_factory.mktemp("stack-logs")
    options = StackOptions(log_dir=logs, free_ports=True)
    if pools is not None:
        options.pools = pools
    with Stack(config, options) as running:
        yield running
    for log in sorted(Path(logs).glob("*.log")):
        text = log.read_text()
        assert "Traceback" not in text, f"{log.name}:\n{text[-3000:]}"
