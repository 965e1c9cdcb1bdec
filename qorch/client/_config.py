"""Where a client finds the API, from its arguments or else from the environment: the
variables the ``qorch`` command reads (docs/configuration.md), with the same defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

#: Values of a boolean variable that mean true (as pydantic reads them for the command).
_TRUE = {"1", "true", "yes", "on", "t", "y"}


@dataclass(frozen=True)
class ClientConfig:
    """The REST base URL, the API key (empty: none), the gRPC target, and whether gRPC runs
    over TLS with which root certificates (None: the system's)."""

    url: str
    api_key: str
    grpc_target: str
    grpc_tls: bool = False
    grpc_root_certificates: bytes | None = None

    @classmethod
    def resolve(
        cls,
        url: str | None = None,
        api_key: str | None = None,
        grpc_target: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ClientConfig:
        """Arguments first; then ``QORCH_API_URL`` (else ``http://QORCH_API_HOST:QORCH_API_PORT``,
        by default ``http://127.0.0.1:8000``), ``QORCH_API_KEY``, ``QORCH_GRPC_TARGET`` (else
        ``QORCH_GRPC_HOST:QORCH_GRPC_PORT``, by default ``127.0.0.1:50051``), and for gRPC over
        TLS ``QORCH_GRPC_TLS`` or ``QORCH_GRPC_TLS_CA_FILE`` (the roots to trust)."""
        env = os.environ if env is None else env

        def get(name: str, default: str = "") -> str:
            return env.get(f"QORCH_{name}", "") or default

        if url is None:
            host, port = get("API_HOST", "127.0.0.1"), get("API_PORT", "8000")
            url = get("API_URL", f"http://{host}:{port}")
        if grpc_target is None:
            host, port = get("GRPC_HOST", "127.0.0.1"), get("GRPC_PORT", "50051")
            grpc_target = get("GRPC_TARGET", f"{host}:{port}")
        roots = None
        ca_file = get("GRPC_TLS_CA_FILE")
        if ca_file:
            with open(ca_file, "rb") as ca:
                roots = ca.read()
        tls = roots is not None or get("GRPC_TLS").strip().lower() in _TRUE
        return cls(
            url=url.rstrip("/"),
            api_key=get("API_KEY") if api_key is None else api_key,
            grpc_target=grpc_target,
            grpc_tls=tls,
            grpc_root_certificates=roots,
        )
