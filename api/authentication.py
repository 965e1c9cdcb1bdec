"""Authentication before the body: a route that needs an API key checks it first.

FastAPI reads and parses a request's body before it solves the route's dependencies, so a key
checked only by a dependency is checked after the whole body was received and parsed: anyone,
without a key, could make the API buffer and parse bodies up to the size limit.

``Authentication`` is a pure ASGI middleware (it never buffers): for a request that needs a
key, it checks ``Authorization: Bearer <key>`` before the app receives any of the body. A
missing, unknown or revoked key gets 401 and the body is never read (no ``100 Continue``
either). An accepted key's principal goes to the route in ``scope["state"]``, where the
key-check dependency (api/deps.py) takes it: one lookup per request. Scope checks (403) stay
in the dependency.

Which requests need a key is a rule on the path, so it needs no routing and cannot drift with
the router's internals: everything under ``/v1`` (``KEYED_PREFIX``), known route or not. That
is exactly the routes whose dependencies include the key check (``_principal`` in
api/deps.py, shown as the ``ApiKey`` security scheme in the OpenAPI schema):
tests/unit/test_authentication.py checks that the two agree. The rest stays open: /healthz,
/readyz, /metrics, /openapi.json, /docs (with /docs/oauth2-redirect) and /redoc.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import KeyCache, Principal
from qorchestra.apikeys import bearer_token, key_prefix

#: The challenge every 401 carries.
CHALLENGE = {"WWW-Authenticate": "Bearer"}
#: Where, in ``scope["state"]`` (``request.state``), the authenticated principal is.
PRINCIPAL_STATE = "principal"
#: Every path under it needs a key.
KEYED_PREFIX = "/v1"
MISSING_KEY = "missing API key: send Authorization: Bearer <key>"


class Unauthenticated(Exception):
    """No key, or an unknown or revoked one: 401 with ``detail``."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def principal_of(keys: KeyCache, authorization: str | None) -> Principal:
    """The principal of an ``Authorization: Bearer <key>`` header; raises Unauthenticated
    without a key or with an unknown or revoked one (the reason shows only its prefix).
    May query Postgres: call it from a thread, not the event loop."""
    key = bearer_token(authorization)
    if key is None:
        raise Unauthenticated(MISSING_KEY)
    principal = keys.principal(key)
    if principal is None:
        shown = key_prefix(key).encode("ascii", "replace").decode()
        raise Unauthenticated(f"invalid or revoked API key {shown}...")
    return principal


def authenticated(scope: Scope) -> Principal | None:
    """The principal ``Authentication`` accepted for this request, if it checked one."""
    principal = scope.get("state", {}).get(PRINCIPAL_STATE)
    return principal if isinstance(principal, Principal) else None


def route_path(scope: Scope) -> str:
    """The path the router matches: ``scope["path"]`` without the ``root_path`` it starts
    with (as Starlette's routing takes it)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


def needs_key(path: str) -> bool:
    """Whether a request to ``path`` (as the router matches it) needs an API key."""
    return path == KEYED_PREFIX or path.startswith(KEYED_PREFIX + "/")


async def _handled(app: Any, scope: Scope, exc: Exception) -> Response | None:
    """The answer of the app's own handler for ``exc`` (api/errors.py: a database that does not
    answer gets 503 there), or None where it has none. The middleware runs outside the app's
    exception middleware, so it asks the same handlers itself."""
    handlers = getattr(app, "exception_handlers", {})
    for cls in type(exc).__mro__:
        handler = handlers.get(cls)
        if handler is not None and cls is not Exception:
            answer = handler(Request(scope), exc)
            if not isinstance(answer, Response):
                answer = await answer
            return answer if isinstance(answer, Response) else None
    return None


class Authentication:
    """ASGI middleware: the API key of a request that needs one (``needs_key``), checked
    before the body is read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not needs_key(route_path(scope)):
            await self.app(scope, receive, send)
            return
        app = scope["app"]  # the Starlette app, set before its middleware runs
        authorization = Headers(scope=scope).get("authorization")
        try:
            if bearer_token(authorization) is None:  # no lookup, no thread
                raise Unauthenticated(MISSING_KEY)
            principal = await run_in_threadpool(principal_of, app.state.keys, authorization)
        except Unauthenticated as exc:
            refusal = JSONResponse({"detail": exc.detail}, status_code=401, headers=CHALLENGE)
            await refusal(scope, receive, send)
            return
        except Exception as exc:
            answer = await _handled(app, scope, exc)
            if answer is None:
                raise
            await answer(scope, receive, send)
            return
        scope.setdefault("state", {})[PRINCIPAL_STATE] = principal
        await self.app(scope, receive, send)
