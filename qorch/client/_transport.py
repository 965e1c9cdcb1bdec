"""What ``Client`` and ``AsyncClient`` share about talking to the API: defaults, headers,
decoding answers into JSON or typed errors, when to send a request again, gRPC credentials."""

from __future__ import annotations

from typing import Any

import grpc
import httpx

from qorch.client._config import ClientConfig
from qorch.client._errors import ConnectionFailed, Timeout, error_for_response
from qorch.client._retry import RETRY_STATUSES, RetryPolicy
from qorch.client._routes import Call

#: Seconds a request may take by default; predictions wait for the nodes, at least this long.
DEFAULT_TIMEOUT_S = 30.0
PREDICT_TIMEOUT_S = 120.0
#: Failures in a row (no event in between) after which a watch stops resuming.
WATCH_RETRIES = 10
#: The gRPC channel tries to reconnect soon after a drop (its default waits from 1 s up to
#: 2 min), so that a resumed watch finds it connected.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5000),
)


def headers_for(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def decode(response: httpx.Response, call: Call) -> Any:
    """The JSON of an answer; the typed exception of an error answer."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if response.status_code >= 400 and response.status_code not in call.answers:
        raise error_for_response(response.status_code, body, response.headers)
    return body


def retry_pause(
    policy: RetryPolicy, call: Call, attempt: int, response: httpx.Response | None
) -> float | None:
    """Seconds to wait before sending ``call`` again after this attempt (``response`` None:
    it failed to connect or answer), or None to stop here."""
    if not call.retry or attempt >= policy.max_retries:
        return None
    if response is None:
        return policy.pause(attempt)
    if response.status_code not in RETRY_STATUSES:
        return None
    header = response.headers.get("retry-after")
    try:
        return policy.pause(attempt, float(header) if header is not None else None)
    except ValueError:
        return policy.pause(attempt)


def transport_error(exc: httpx.TransportError, url: str) -> Exception:
    if isinstance(exc, httpx.TimeoutException):
        return Timeout(f"no answer from the API at {url} in time: {exc}")
    return ConnectionFailed(f"cannot reach the API at {url}: {exc}")


def channel_credentials(
    config: ClientConfig, given: grpc.ChannelCredentials | None
) -> grpc.ChannelCredentials | None:
    """TLS credentials for gRPC: those given, else from the configuration (None: plaintext)."""
    if given is not None:
        return given
    if config.grpc_tls:
        return grpc.ssl_channel_credentials(root_certificates=config.grpc_root_certificates)
    return None
