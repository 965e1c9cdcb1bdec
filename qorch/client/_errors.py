"""What the SDK raises: one class per kind of refusal, mapped from HTTP statuses and gRPC codes
in one place each (``error_for_response``, ``error_for_grpc``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc


class QorchError(Exception):
    """Anything the SDK raises on purpose."""


class ConnectionFailed(QorchError):
    """The API (REST or gRPC) could not be reached, after the retries; the cause is chained."""


class Timeout(QorchError, TimeoutError):
    """A request, a wait or a watch ran past its timeout."""


@dataclass(frozen=True)
class FieldError:
    """One field at fault in a 422: where (``loc``: ``body``, ``query``, ``path`` or
    ``header``, then the path into it) and why."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = ""

    @property
    def field(self) -> str:
        """The path within its part, dotted: ``programs.0.source``, ``Idempotency-Key``."""
        return ".".join(str(part) for part in self.loc[1:]) or ".".join(map(str, self.loc))

    def __str__(self) -> str:
        return f"{'.'.join(str(part) for part in self.loc)}: {self.msg}"


def format_detail(detail: Any) -> str:
    """A readable form of an answer's ``detail`` (a string or a list of field errors)."""
    if isinstance(detail, list):
        return "; ".join(
            str(FieldError(tuple(item.get("loc", ())), str(item.get("msg", ""))))
            if isinstance(item, Mapping)
            else str(item)
            for item in detail
        )
    return str(detail)


class ApiError(QorchError):
    """The API refused a request. ``status`` is the HTTP status (for a refused gRPC call, the
    HTTP status of the same refusal); ``detail`` is the answer's ``detail`` as sent: a string,
    or for a 422 the list of field errors (``ValidationFailed.errors`` has them typed)."""

    #: The status this class stands for (ApiError itself: any other).
    STATUS = 0

    def __init__(self, status: int, detail: Any, *, message: str | None = None) -> None:
        super().__init__(message or f"HTTP {status}: {format_detail(detail)}")
        self.status = status
        self.detail = detail


class BadRequest(ApiError):
    """400 (gRPC INVALID_ARGUMENT): the request is malformed."""

    STATUS = 400


class Unauthenticated(ApiError):
    """401 (gRPC UNAUTHENTICATED): no API key, or an unknown or revoked one."""

    STATUS = 401


class Forbidden(ApiError):
    """403 (gRPC PERMISSION_DENIED): the key lacks the scope the call needs."""

    STATUS = 403


class NotFound(ApiError):
    """404 (gRPC NOT_FOUND): no such object, or another tenant's."""

    STATUS = 404


class Conflict(ApiError):
    """409: the object's state does not allow it (a finished job's cancel, the result of a job
    that did not succeed)."""

    STATUS = 409


class PayloadTooLarge(ApiError):
    """413: the request body is larger than the API accepts."""

    STATUS = 413


class ValidationFailed(ApiError):
    """422: the request is invalid; nothing was stored. ``errors`` names every field at fault;
    ``estimate_usd`` is set when a job would cost more than its cap or the tenant's budget."""

    STATUS = 422

    def __init__(
        self, status: int, detail: Any, *, estimate_usd: float | None = None, message: str = ""
    ) -> None:
        super().__init__(status, detail, message=message or None)
        self.errors: list[FieldError] = [
            FieldError(tuple(item.get("loc", ())), str(item.get("msg", "")), item.get("type", ""))
            for item in (detail if isinstance(detail, list) else [])
            if isinstance(item, Mapping)
        ]
        if not self.errors and detail:
            self.errors = [FieldError((), str(detail))]
        self.estimate_usd = estimate_usd


class RateLimited(ApiError):
    """429 (gRPC RESOURCE_EXHAUSTED): past the tenant's submission rate or its unfinished
    jobs; ``retry_after`` is the seconds to wait the API asked for (None: not said)."""

    STATUS = 429

    def __init__(self, status: int, detail: Any, *, retry_after: float | None = None) -> None:
        super().__init__(status, detail)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx: the API could not answer (not the request's fault)."""

    STATUS = 500


class Unavailable(ServerError):
    """503 (gRPC UNAVAILABLE): a dependency of the API is down or every parser is busy;
    ``retry_after`` is the seconds to wait the API asked for (None: not said)."""

    STATUS = 503

    def __init__(
        self,
        status: int,
        detail: Any,
        *,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        super().__init__(status, detail, message=message)
        self.retry_after = retry_after


class GatewayTimeout(ServerError):
    """504: the work did not finish in the API's time (a prediction whose nodes did not
    answer; its job goes on)."""

    STATUS = 504


_BY_STATUS: dict[int, type[ApiError]] = {
    cls.STATUS: cls
    for cls in (
        BadRequest,
        Unauthenticated,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        GatewayTimeout,
    )
}


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a ``Retry-After`` header (None when absent or not a number of seconds)."""
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def error_for_response(status: int, body: Any, headers: Mapping[str, str]) -> ApiError:
    """The exception for an HTTP error answer; ``body`` is its decoded JSON (or text)."""
    detail = body.get("detail", body) if isinstance(body, Mapping) else body
    if status == 422:
        estimate = body.get("estimate_usd") if isinstance(body, Mapping) else None
        return ValidationFailed(status, detail, estimate_usd=estimate)
    if status == 429:
        return RateLimited(status, detail, retry_after=retry_after(headers))
    if status == 503:
        return Unavailable(status, detail, retry_after=retry_after(headers))
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    return cls(status, detail)


#: gRPC codes and the HTTP status of the same refusal.
_GRPC_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
}


def error_for_grpc(code: grpc.StatusCode, details: str) -> QorchError:
    """The exception for a failed gRPC call (``Timeout`` for DEADLINE_EXCEEDED)."""
    message = f"gRPC {code.name}: {details}"
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return Timeout(message)
    status = _GRPC_STATUS.get(code, 500)
    if status == 503:
        return Unavailable(status, details, message=message)
    if status == 429:
        return RateLimited(status, details)
    cls = _BY_STATUS.get(status, ServerError)
    return cls(status, details, message=message)
