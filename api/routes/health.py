"""Liveness and readiness."""

from __future__ import annotations

import logging
import threading

from confluent_kafka.admin import AdminClient
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.schemas import Readiness
from qorchestra.config import Settings
from qorchestra.kafka import admin_client
from qorchestra.store.db import check_database
from qorchestra.store.migrate import SchemaNotReady

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

#: Seconds a readiness check waits for the broker's metadata.
KAFKA_TIMEOUT_S = 2.0


class KafkaProbe:
    """The one admin client of a process's readiness checks.

    Each AdminClient starts threads and broker connections, so one is kept (the app owns it,
    on ``app.state``) rather than built per ``/readyz``. It is built on first use and again
    after a failed check: a client that failed may be stuck on a broker that went away."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._admin: AdminClient | None = None
        #: Admin clients built so far (the first one, and one after each failure).
        self.built = 0

    def brokers(self, timeout: float = KAFKA_TIMEOUT_S) -> int:
        """Brokers in the cluster's metadata; raises when the cluster does not answer."""
        with self._lock:
            if self._admin is None:
                self._admin = admin_client(self._settings)
                self.built += 1
            admin = self._admin
        try:
            return len(admin.list_topics(timeout=timeout).brokers)
        except Exception:
            with self._lock:
                if self._admin is admin:  # not yet replaced by a concurrent check
                    self._admin = None
            raise


#: Guards the creation of each app's probe (readiness checks run in a thread pool).
_PROBE_LOCK = threading.Lock()


def kafka_probe(request: Request) -> KafkaProbe:
    """The app's probe, made on first use (``request.app.state.kafka_probe``)."""
    state = request.app.state
    probe: KafkaProbe | None = getattr(state, "kafka_probe", None)
    if probe is None:
        with _PROBE_LOCK:
            probe = getattr(state, "kafka_probe", None)
            if probe is None:
                probe = KafkaProbe(state.settings)
                state.kafka_probe = probe
    return probe


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency is unavailable."}},
    summary="Readiness",
)
def readyz(request: Request) -> JSONResponse:
    """Postgres answers and is migrated, and the Kafka cluster answers metadata requests.

    The answer names what failed, not how (no hosts, ports or driver messages: the route needs
    no key); the details go to the log."""
    checks: dict[str, str] = {}
    engine = request.app.state.engine
    try:
        check_database(engine)
        checks["postgres"] = "ok"
    except SchemaNotReady as exc:
        checks["postgres"] = str(exc)
    except Exception as exc:
        logger.warning("readiness: postgres unavailable: %s", exc)
        checks["postgres"] = f"unavailable: {type(exc).__name__}"
    try:
        brokers = kafka_probe(request).brokers()
        checks["kafka"] = f"ok ({brokers} broker(s))"
    except Exception as exc:
        logger.warning("readiness: kafka unavailable: %s", exc)
        checks["kafka"] = f"unavailable: {type(exc).__name__}"
    ready = all(v.startswith("ok") for v in checks.values())
    body = Readiness(status="ready" if ready else "unavailable", checks=checks)
    return JSONResponse(status_code=200 if ready else 503, content=body.model_dump())
