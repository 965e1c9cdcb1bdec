"""The SDK's errors: each HTTP status and gRPC code of a refusal becomes its own exception,
with what the answer said (a 422's fields as objects, a 429's or 503's Retry-After)."""

from __future__ import annotations

import grpc
import pytest

from qorch.client import (
    ApiError,
    BadRequest,
    Conflict,
    FieldError,
    Forbidden,
    GatewayTimeout,
    NotFound,
    PayloadTooLarge,
    QorchError,
    RateLimited,
    ServerError,
    Timeout,
    Unauthenticated,
    Unavailable,
    ValidationFailed,
)
from qorch.client._errors import error_for_grpc, error_for_response


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, BadRequest),
        (401, Unauthenticated),
        (403, Forbidden),
        (404, NotFound),
        (409, Conflict),
        (413, PayloadTooLarge),
        (429, RateLimited),
        (500, ServerError),
        (502, ServerError),
        (503, Unavailable),
        (504, GatewayTimeout),
        (418, ApiError),
    ],
)
def test_each_status_has_its_exception_with_status_and_detail(
    status: int, kind: type[ApiError]
) -> None:
    error = error_for_response(status, {"detail": "why"}, {})
    assert type(error) is kind
    assert isinstance(error, ApiError) and isinstance(error, QorchError)
    assert (error.status, error.detail) == (status, "why")
    assert str(error) == f"HTTP {status}: why"


def test_a_422_names_every_field_as_objects_and_keeps_the_raw_detail() -> None:
    detail = [
        {"loc": ["body", "programs", 0, "source"], "msg": "syntax error", "type": "value_error"},
        {"loc": ["header", "Idempotency-Key"], "msg": "used for another job", "type": "x"},
    ]
    error = error_for_response(422, {"detail": detail, "estimate_usd": 1.5}, {})

    assert isinstance(error, ValidationFailed)
    assert error.detail == detail  # as sent: callers index it
    assert error.errors == [
        FieldError(("body", "programs", 0, "source"), "syntax error", "value_error"),
        FieldError(("header", "Idempotency-Key"), "used for another job", "x"),
    ]
    assert [e.field for e in error.errors] == ["programs.0.source", "Idempotency-Key"]
    assert error.estimate_usd == 1.5
    assert str(error) == (
        "HTTP 422: body.programs.0.source: syntax error; "
        "header.Idempotency-Key: used for another job"
    )


def test_a_422_with_a_plain_detail_still_has_one_field_error() -> None:
    error = error_for_response(422, {"detail": "bad"}, {})
    assert isinstance(error, ValidationFailed)
    assert error.errors == [FieldError((), "bad")] and error.estimate_usd is None


@pytest.mark.parametrize(("status", "kind"), [(429, RateLimited), (503, Unavailable)])
def test_retry_after_is_read_in_seconds(status: int, kind: type[ApiError]) -> None:
    error = error_for_response(status, {"detail": "slow down"}, {"retry-after": "3"})
    assert isinstance(error, kind) and getattr(error, "retry_after", None) == 3.0
    unsaid = error_for_response(status, {"detail": "slow down"}, {"retry-after": "soon"})
    assert getattr(unsaid, "retry_after", "missing") is None


def test_an_answer_that_is_not_json_is_the_detail() -> None:
    error = error_for_response(502, "<html>bad gateway</html>", {})
    assert isinstance(error, ServerError) and error.detail == "<html>bad gateway</html>"


@pytest.mark.parametrize(
    ("code", "kind", "status"),
    [
        (grpc.StatusCode.NOT_FOUND, NotFound, 404),
        (grpc.StatusCode.UNAUTHENTICATED, Unauthenticated, 401),
        (grpc.StatusCode.PERMISSION_DENIED, Forbidden, 403),
        (grpc.StatusCode.INVALID_ARGUMENT, BadRequest, 400),
        (grpc.StatusCode.UNAVAILABLE, Unavailable, 503),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, RateLimited, 429),
        (grpc.StatusCode.INTERNAL, ServerError, 500),
    ],
)
def test_grpc_codes_are_the_same_exceptions_as_their_http_statuses(
    code: grpc.StatusCode, kind: type[ApiError], status: int
) -> None:
    error = error_for_grpc(code, "job x not found")
    assert type(error) is kind
    assert isinstance(error, ApiError) and error.status == status
    assert error.detail == "job x not found"


def test_a_grpc_deadline_is_a_timeout() -> None:
    error = error_for_grpc(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    assert isinstance(error, Timeout) and isinstance(error, TimeoutError)
    assert "DEADLINE_EXCEEDED" in str(error)
