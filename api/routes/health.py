"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.schemas import Readiness
from qorchestra.kafka import admin_client
from qorchestra.store.db import check_database
from qorchestra.store.migrate import SchemaNotReady

router = APIRouter(tags=["health"])


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
    """Postgres answers and is migrated, and the Kafka cluster answers metadata requests."""
    checks: dict[str, str] = {}
    engine = request.app.state.engine
    try:
        check_database(engine)
        checks["postgres"] = "ok"
    except SchemaNotReady as exc:
        checks["postgres"] = str(exc)
    except Exception as exc:
        checks["postgres"] = f"unavailable: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    try:
        admin = admin_client(request.app.state.settings)
        brokers = admin.list_topics(timeout=2).brokers
        checks["kafka"] = f"ok ({len(brokers)} broker(s))"
    except Exception as exc:
        checks["kafka"] = f"unavailable: {exc}"
    ready = all(v.startswith("ok") for v in checks.values())
    body = Readiness(status="ready" if ready else "unavailable", checks=checks)
    return JSONResponse(status_code=200 if ready else 503, content=body.model_dump())
