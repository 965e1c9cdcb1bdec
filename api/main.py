"""Entry point of the API process (REST + gRPC)."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from qorch.config import Settings


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
    server.run()
    return 0
