"""Domain errors mapped to HTTP answers, in one place."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, DBAPIError

from api.admission import CostError, ParsersBusy, TooManyRequests
from api.use_cases import Conflict, IdempotencyKeyReused
from qorchestra.jobs.errors import SpecError
from qorchestra.jobs.kinds import KINDS
from qorchestra.lifecycle import InvalidTransition
from qorchestra.metrics import API_UNAVAILABLE
from qorchestra.store.repository import NotFound

logger = logging.getLogger(__name__)


def spec_error_detail(exc: SpecError) -> list[dict[str, object]]:
    """FastAPI's 422 shape: one entry per field, with its location in the body."""
    return [{"loc": ["body", *e.loc], "msg": e.msg, "type": "value_error"} for e in exc.errors]


#: Tags of the job-kind union; pydantic puts them in error locations, users never wrote them.
_KIND_TAGS = frozenset(KINDS)


def _without_kind_tag(loc: Sequence[Any]) -> list[Any]:
    if len(loc) > 1 and loc[0] == "body" and loc[1] in _KIND_TAGS:
        return [loc[0], *loc[2:]]
    return list(loc)


class ErrorBody(BaseModel):
    """Why a request was refused."""

    detail: str = Field(description="A readable reason (a key is shown only by its prefix).")


class InvalidField(BaseModel):
    """One field at fault."""

    loc: list[str | int] = Field(
        description="Where: `body`, `query` or `path`, then the path into it, e.g. "
        '`["body", "programs", 0, "source"]`.'
    )
    msg: str = Field(description="Why the value is refused.")
    type: str = Field(description="The kind of error, e.g. `value_error` or `missing`.")


class InvalidRequest(BaseModel):
    """Why a request was refused with 422: every field at fault, and nothing was stored."""

    detail: list[InvalidField] = Field(description="One entry per field at fault.")
    estimate_usd: float | None = Field(
        None,
        description="Only when a job would cost more than its `max_cost_usd` or the tenant's "
        "remaining budget: the estimated cost in USD.",
    )


def document_invalid_requests(app: FastAPI) -> None:
    """Describe 422 answers in the OpenAPI schema by the shape the handlers below give.

    FastAPI documents every 422 with its own ``HTTPValidationError``, whose entries also carry
    ``input`` and ``ctx``; these answers never do, and a priced job's also has ``estimate_usd``.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schemas = schema.get("components", {}).get("schemas", {})
            if "HTTPValidationError" in schemas:  # the name FastAPI's 422 answers refer to
                body = InvalidRequest.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(body.pop("$defs", {}))
                schemas.pop("ValidationError", None)
                schemas["HTTPValidationError"] = body
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _documented(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


#: Answers every /v1 route may give besides its own (documented in the OpenAPI schema).
V1_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _documented("No API key, or an unknown or revoked one."),
    403: _documented("The key lacks the scope this route needs."),
    404: _documented("Not found, or another tenant's."),
    409: _documented("The object is not in a state that allows this."),
    413: _documented("The request body is larger than the limit."),
    429: _documented("Submitting too fast or too many unfinished jobs; see Retry-After."),
    503: _documented(
        "A dependency (Postgres) is unavailable, or every program parser is busy; see Retry-After."
    ),
}


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping of domain errors to status codes."""

    @app.exception_handler(TooManyRequests)
    async def too_many(_: Request, exc: TooManyRequests) -> JSONResponse:
        retry = max(1, round(exc.retry_after + 0.499))
        status = 503 if isinstance(exc, ParsersBusy) else 429  # busy parsers: not the caller's
        return JSONResponse(
            status_code=status, headers={"Retry-After": str(retry)}, content={"detail": exc.detail}
        )

    @app.exception_handler(CostError)
    async def too_costly(_: Request, exc: CostError) -> JSONResponse:
        content = {"detail": spec_error_detail(exc), "estimate_usd": exc.estimate_usd}
        return JSONResponse(status_code=422, content=jsonable_encoder(content))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Where, why and the error type; not the offending input, which can be the whole
        # body, and may hold values JSON cannot carry (NaN, Infinity) that would turn the
        # answer itself into a 500.
        errors = [
            {"loc": _without_kind_tag(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content=jsonable_encoder({"detail": errors}))

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(SpecError)
    async def invalid_spec(_: Request, exc: SpecError) -> JSONResponse:
        return JSONResponse(
            status_code=422, content=jsonable_encoder({"detail": spec_error_detail(exc)})
        )

    @app.exception_handler(IdempotencyKeyReused)
    async def key_reused(_: Request, exc: IdempotencyKeyReused) -> JSONResponse:
        detail = [{"loc": ["header", "Idempotency-Key"], "msg": str(exc), "type": "value_error"}]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(InvalidTransition)
    @app.exception_handler(Conflict)
    async def conflict(_: Request, exc: InvalidTransition | Conflict) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    @app.exception_handler(DataError)
    async def unstorable_value(request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the request carried (a NUL character in a string, a
        # number out of its column's range): the request is at fault, not the service.
        logger.info("value refused by the database: %s", exc.orig, extra={"path": request.url.path})
        reason = str(exc.orig).splitlines()[0] if exc.orig else "value cannot be stored"
        detail = [
            {"loc": ["body"], "msg": f"a value cannot be stored: {reason}", "type": "value_error"}
        ]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(DBAPIError)
    async def database_down(request: Request, exc: DBAPIError) -> JSONResponse:
        API_UNAVAILABLE.labels("postgres").inc()
        logger.warning(
            "database error answered with 503: %s", exc.orig, extra={"path": request.url.path}
        )
        return JSONResponse(
            status_code=503,
            headers={"Retry-After": "2"},
            content={"detail": f"database unavailable: {type(exc.orig).__name__}"},
        )
