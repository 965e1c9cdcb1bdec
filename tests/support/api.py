"""The API process's app served in-process by uvicorn on a free port (real HTTP and gRPC over
TCP, the session's Postgres and broker), and API keys of several tenants and scopes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn

from api.app import create_app
from nodes.agent import NodeAgent
from orchestrator.service import Orchestrator
from qorch.embedded import free_port
from qorchestra.apikeys import generate_key
from qorchestra.config import Settings
from qorchestra.kafka import ensure_topics
from tests.support.agents import running
from tests.support.databases import database_of_its_own
from tests.support.settings import enrolled, make_settings
from tests.support.waiting import wait_until


@dataclass
class RunningApi:
    """A served API: where it is, its settings and admin key, and helpers to call it."""

    url: str
    grpc_target: str
    settings: Settings
    admin_key: str
    keys: dict[str, str] = field(default_factory=dict)  # label -> key

    def headers(self, key: str | None) -> dict[str, str]:
        """Authorization header for ``key`` (none for None)."""
        return {"Authorization": f"Bearer {key}"} if key is not None else {}

    def call(self, method: str, path: str, key: str | None, **kwargs: Any) -> httpx.Response:
        """One request with ``key``."""
        headers = {**self.headers(key), **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=120, **kwargs)

    def new_key(self, tenant: str, scopes: list[str]) -> str:
        """A key made through the API by the admin."""
        answer = self.call(
            "POST", "/v1/keys", self.admin_key, json={"tenant": tenant, "scopes": scopes}
        )
        assert answer.status_code == 201, answer.text
        key: str = answer.json()["key"]
        return key


@contextmanager
def running_api(database_url: str, kafka_bootstrap: str, **overrides: Any) -> Iterator[RunningApi]:
    """Serve ``create_app`` until the block ends."""
    admin_key = generate_key()
    settings = make_settings(
        database_url=database_url,
        kafka_bootstrap=kafka_bootstrap,
        api_port=free_port(),
        grpc_port=free_port(),
        admin_key=admin_key,
        **overrides,
    )
    ensure_topics(settings, ["local-sv", "local-dm"])
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=settings.api_port,
            log_config=None,
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=120, what="the API to start")
        yield RunningApi(
            url=settings.client_api_url(),
            grpc_target=settings.client_grpc_target(),
            settings=settings,
            admin_key=admin_key,
        )
    finally:
        server.should_exit = True
        deadline = time.monotonic() + 30
        thread.join(max(0.1, deadline - time.monotonic()))


@contextmanager
def serving_local_sv(database_url: str, kafka_bootstrap: str) -> Iterator[RunningApi]:
    """The API, the orchestrator and an agent of ``local-sv``, on a database of their own."""
    with (
        database_of_its_own(database_url) as database,
        running_api(database, kafka_bootstrap) as served,
        running(Orchestrator(served.settings)),
        running(NodeAgent(enrolled(served.settings, "local-sv"), "local-sv")),
    ):
        yield served
