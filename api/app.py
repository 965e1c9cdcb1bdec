"""The API process: FastAPI app and, in the same event loop, the gRPC server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.admission import PoolLookup
from api.auth import KeyCache, register_admin_key
from api.authentication import Authentication
from api.docs_pages import create_docs_app
from api.errors import V1_RESPONSES, document_invalid_requests, install_error_handlers
from api.event_hub import EventHub
from api.grpc_server import create_server
from api.limits import BodyLimit
from api.ratelimit import RateLimiter
from api.routes import (
    datasets,
    health,
    jobs,
    keys,
    node_credentials,
    nodes,
    pools,
    tenants,
    training,
)
from api.sandbox import ProgramSandbox
from api.ui import router as ui_router
from qorchestra.config import Settings
from qorchestra.heap import freeze_startup_heap
from qorchestra.kafka import Producer, ensure_topics
from qorchestra.qasm import analyze
from qorchestra.store.credentials import load_control_plane_signer
from qorchestra.store.db import fill_pool, make_engine, make_session_factory

logger = logging.getLogger(__name__)

DESCRIPTION = """
Submit quantum circuit jobs, follow them, and read their results.

A job is cut into fragments that node agents run on Braket simulators or devices; progress is
streamed over gRPC (`qorch.v1.JobService/WatchJob`) and stored as the job's events.

Every `/v1` route needs an API key. On `/docs`, press **Authorize** and enter the key alone (the
page sends `Authorization: Bearer <key>`), then **Try it out** on any operation: each request
body offers a working example.
"""


#: A program parsed once at start-up, so the first submitted job does not load the parser.
WARM_UP_PROGRAM = "OPENQASM 3.0;\ninput float a;\nqubit[1] q;\nrx(a) q[0];\n"


def create_app(settings: Settings) -> FastAPI:
    """The FastAPI app. Its lifespan connects to Postgres and Kafka and serves gRPC."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A connection for each of the threads that serve requests: with fewer, the threads
        # beyond the pool open and close a connection each (Postgres' authentication costs
        # both sides milliseconds of CPU) under a burst of submissions.
        threads = int(anyio.to_thread.current_default_thread_limiter().total_tokens)
        engine = make_engine(settings.database_url, pool_size=threads)
        await asyncio.to_thread(fill_pool, engine, threads)
        await asyncio.to_thread(ensure_topics, settings)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessions = make_session_factory(engine)
        await asyncio.to_thread(register_admin_key, app.state.sessions, settings)
        app.state.keys = KeyCache(app.state.sessions, settings.key_cache_s)
        app.state.limiter = RateLimiter()
        app.state.pools = PoolLookup()
        app.state.sandbox = sandbox = ProgramSandbox(
            settings.parse_workers,
            settings.parse_timeout_s,
            settings.parse_memory_mb,
            spares=settings.parse_spare_workers,
        )
        await asyncio.to_thread(sandbox.wait_ready)
        # Braket's parser loads its grammar on first use (seconds on a busy machine): pay it
        # at start-up rather than in the first request.
        await asyncio.to_thread(analyze, WARM_UP_PROGRAM)
        app.state.producer = Producer(settings)
        app.state.signer = signer = await asyncio.to_thread(
            load_control_plane_signer, app.state.sessions
        )
        app.state.hub = hub = EventHub(settings, signer)
        hub.start(asyncio.get_running_loop())
        server, port = create_server(settings, app.state.sessions, app.state.keys, hub)
        await server.start()
        app.state.grpc_port = port
        logger.info("gRPC JobService listening", extra={"address": f"{settings.grpc_host}:{port}"})
        freeze_startup_heap()
        try:
            yield
        finally:
            await server.stop(grace=2.0)
            hub.stop()
            sandbox.close()
            app.state.producer.close()
            engine.dispose()

    # /docs and /redoc served with their assets, so that they work with no internet
    # (api/docs_pages.py).
    app = create_docs_app(
        title="qorchestra",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    document_invalid_requests(app)
    # Added last, so it runs first (outermost): a route that needs a key checks it before any
    # of the body is read, and only requests it lets through meet the body limit (413).
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(Authentication)
    for router in (jobs.router, training.router, datasets.router, nodes.router, pools.router):
        app.include_router(router, responses=V1_RESPONSES)
    app.include_router(node_credentials.router, responses=V1_RESPONSES)
    app.include_router(keys.router, responses=V1_RESPONSES)
    app.include_router(tenants.router, responses=V1_RESPONSES)
    app.include_router(health.router)
    app.include_router(ui_router)  # the dashboard, /ui (api/ui)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """Prometheus counters of this process (qorchestra/metrics.py)."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
