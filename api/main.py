"""Entry point of the API process (REST + gRPC)."""

from __future__ import annotations

import signal

import uvicorn

from api.app import create_app
from qorchestra.config import Settings


def serve(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT (uvicorn handles both and drains connections)."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host=settings.api_host,
            port=settings.api_port,
            log_config=None,
            timeout_graceful_shutdown=5,
        )
    )
    # uvicorn handles SIGTERM/SIGINT itself (graceful drain), then raises the signal again once
    # it restored the handlers it found. Found ones that do nothing, so a drained API exits 0
    # instead of dying by the signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: None)
    server.run()
    return 0
