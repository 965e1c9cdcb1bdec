"""The gRPC error table (api/grpc_server.py): every handler's exceptions map to a status and a
message fit for the caller; driver messages, SQL and other internals stay in the log. The
cases a running API cannot be made to produce on purpose (INTERNAL) are checked here;
tests/integration/test_grpc_errors.py checks the rest against a real API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

import grpc
import pytest
from sqlalchemy.exc import DataError, OperationalError

from api.grpc_server import InvalidArgument, stream_errors, unary_errors
from qorchestra.store.repository import NotFound

SECRET = 'connection to server at "10.1.2.3", port 5432 failed'
SQL = "SELECT jobs.id FROM jobs WHERE jobs.id = %(id_1)s"


class Context:
    """What a handler's context does on abort: remember the status, and end the handler."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details: str | None = None

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        self.code, self.details = code, details
        raise grpc.aio.AbortError()


class Service:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc
        self.closed = False

    @unary_errors
    async def Unary(self, request: Any, context: Any) -> str:
        raise self.exc

    @stream_errors
    async def Stream(self, request: Any, context: Any) -> AsyncGenerator[int, None]:
        try:
            yield 1
            raise self.exc
        finally:
            self.closed = True


CASES = [
    (NotFound("job x not found"), grpc.StatusCode.NOT_FOUND, "job x not found"),
    (InvalidArgument("from_seq too big"), grpc.StatusCode.INVALID_ARGUMENT, "from_seq too big"),
    (
        DataError(SQL, {"id_1": "x"}, Exception("integer out of range")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "a value of the request is invalid",
    ),
    (
        OperationalError(SQL, {"id_1": "x"}, Exception(SECRET)),
        grpc.StatusCode.UNAVAILABLE,
        "database unavailable",
    ),
    (RuntimeError(f"{SECRET} in {SQL}"), grpc.StatusCode.INTERNAL, "internal error"),
    (KeyError("10.1.2.3"), grpc.StatusCode.INTERNAL, "internal error"),
]


@pytest.mark.parametrize(("exc", "code", "details"), CASES)
def test_unary_errors(
    exc: Exception, code: grpc.StatusCode, details: str, caplog: pytest.LogCaptureFixture
) -> None:
    context = Context()
    caplog.set_level(logging.DEBUG, logger="api.grpc_server")
    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(Service(exc).Unary(None, context))
    assert (context.code, context.details) == (code, details)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL):
        assert "10.1.2.3" in caplog.text  # the details are in the log


@pytest.mark.parametrize(("exc", "code", "details"), CASES)
def test_stream_errors_after_a_reply(exc: Exception, code: grpc.StatusCode, details: str) -> None:
    context = Context()
    service = Service(exc)
    replies: list[int] = []

    async def read() -> None:
        async for reply in service.Stream(None, context):
            replies.append(reply)

    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(read())
    assert replies == [1]
    assert (context.code, context.details) == (code, details)
    assert service.closed


def test_an_abort_the_handler_chose_passes_unchanged() -> None:
    class Aborting:
        @unary_errors
        async def Unary(self, request: Any, context: Context) -> str:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing API key")
            return "never"

    context = Context()
    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(Aborting().Unary(None, context))
    assert (context.code, context.details) == (grpc.StatusCode.UNAUTHENTICATED, "missing API key")


def test_a_stream_the_caller_leaves_is_closed_at_once() -> None:
    """The client went away after the first reply: the handler's ``finally`` runs (a watcher
    is unsubscribed) when the wrapper is closed, not when the garbage collector gets to it."""
    service = Service(RuntimeError("unused"))

    async def leave() -> None:
        stream = service.Stream(None, Context())
        assert await stream.__anext__() == 1
        await stream.aclose()

    asyncio.run(leave())
    assert service.closed
