"""Authentication before the body (api/authentication.py): which requests need a key, and the
middleware's answers at the ASGI level, with the key lookup replaced (no Postgres).

tests/integration/test_auth_before_body.py checks the same against the served API."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy.exc import OperationalError
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Scope

from api import deps
from api.app import create_app
from api.auth import Principal
from api.authentication import Authentication, needs_key, route_path
from api.routes import datasets, health, jobs, keys, nodes, tenants, training
from qorchestra.apikeys import generate_key
from qorchestra.config import Settings

#: The routes that stay open (no key), schema or not.
OPEN = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
}
READER = Principal("key-1", "qk_reader1", "acme", frozenset({"read"}))


def _depends_on(dependant: Dependant, call: Callable[..., Any]) -> bool:
    return any(d.call is call or _depends_on(d, call) for d in dependant.dependencies)


def _routes() -> Iterator[BaseRoute]:
    """Every route of the app: its own and the routers' (app.py adds no prefix to them)."""
    yield from create_app(Settings()).router.routes
    for module in (jobs, training, datasets, nodes, keys, tenants, health):
        yield from module.router.routes


def test_the_path_rule_is_the_key_check_dependency() -> None:
    """A route needs a key (its dependencies include the key check) exactly where the
    middleware checks one before the body: under /v1."""
    seen = set()
    for route in _routes():
        if isinstance(route, APIRoute):
            seen.add(route.path)
            assert _depends_on(route.dependant, deps._principal) == needs_key(route.path), (
                route.path
            )
        elif isinstance(route, Route):  # the docs' own routes
            seen.add(route.path)
            assert route.path in OPEN
    assert seen >= OPEN
    assert sum(needs_key(path) for path in seen) >= 12


def test_the_schema_shows_the_key_scheme_where_the_middleware_asks_for_a_key() -> None:
    schema = create_app(Settings()).openapi()
    assert schema["components"]["securitySchemes"] == {
        "ApiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `Authorization: Bearer <key>` (docs/security.md).",
        }
    }
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            secured = operation.get("security") == [{"ApiKey": []}]
            assert secured == needs_key(path), (method, path)
            assert secured or path in OPEN, (method, path)


@pytest.mark.parametrize(
    ("path", "keyed"),
    [
        ("/v1", True),
        ("/v1/jobs", True),
        ("/v1/jobs/", True),
        ("/v1/no-such-route", True),
        ("/v10", False),
        ("/v1jobs", False),
        ("/healthz", False),
        ("/", False),
    ],
)
def test_needs_key(path: str, keyed: bool) -> None:
    assert needs_key(path) is keyed


def test_the_path_is_taken_as_the_router_takes_it() -> None:
    assert route_path({"path": "/api/v1/jobs", "root_path": "/api"}) == "/v1/jobs"
    assert route_path({"path": "/v1/jobs", "root_path": ""}) == "/v1/jobs"
    assert route_path({"path": "/apiv1/jobs", "root_path": "/api"}) == "/apiv1/jobs"


class _Lookups:
    """A stand-in for the API's ``KeyCache``: the keys it knows, and the calls it got."""

    def __init__(self, known: dict[str, Principal], error: Exception | None = None) -> None:
        self.known = known
        self.error = error
        self.calls: list[tuple[str, str]] = []  # (key, thread name)

    def principal(self, key: str) -> Principal | None:
        self.calls.append((key, threading.current_thread().name))
        if self.error is not None:
            raise self.error
        return self.known.get(key)


@pytest.fixture
def lookups() -> _Lookups:
    return _Lookups({"qk_reader-key-1234567890": READER})


def _call(
    app: Any, path: str, headers: dict[str, str], method: str = "POST"
) -> tuple[list[Message], list[Scope], int]:
    """Run ``Authentication`` around a stand-in app on one request whose body never ends.
    Returns what it sent, the scopes the inner app got, and how often the body was asked for."""
    inner: list[Scope] = []
    sent: list[Message] = []
    asked = 0

    async def downstream(scope: Scope, receive: Any, send: Any) -> None:
        inner.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        nonlocal asked
        asked += 1
        await asyncio.Event().wait()  # a client still sending: nothing comes
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        + [(b"content-length", b"8388608")],
        "app": app,
        "state": {},
    }
    asyncio.run(asyncio.wait_for(Authentication(downstream)(scope, receive, send), 10))
    return sent, inner, asked


def _answer(sent: list[Message]) -> tuple[int, dict[str, str], Any]:
    start, body = sent
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, json.loads(body["body"])


def _app(keys: _Lookups) -> FastAPI:
    app = create_app(Settings())
    app.state.keys = keys
    return app


def test_no_key_gets_401_without_a_lookup_and_without_the_body(lookups: _Lookups) -> None:
    sent, inner, asked = _call(_app(lookups), "/v1/jobs", {})
    status, headers, body = _answer(sent)
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert body == {"detail": "missing API key: send Authorization: Bearer <key>"}
    assert (inner, asked, lookups.calls) == ([], 0, [])


def test_an_unknown_key_gets_401_after_a_lookup_in_a_thread(lookups: _Lookups) -> None:
    key = generate_key()
    sent, inner, asked = _call(_app(lookups), "/v1/jobs", {"Authorization": f"Bearer {key}"})
    status, headers, body = _answer(sent)
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert body == {"detail": f"invalid or revoked API key {key[:10]}..."}
    assert (inner, asked) == ([], 0)
    ((looked_up, thread),) = lookups.calls
    assert looked_up == key and thread != threading.main_thread().name


def test_a_known_key_goes_on_with_its_principal(lookups: _Lookups) -> None:
    headers = {"Authorization": "Bearer qk_reader-key-1234567890"}
    sent, inner, _ = _call(_app(lookups), "/v1/jobs", headers)
    assert sent[0]["status"] == 204
    assert inner[0]["state"]["principal"] == READER
    assert len(lookups.calls) == 1


@pytest.mark.parametrize("path", sorted(OPEN))
def test_open_routes_go_on_without_a_key(lookups: _Lookups, path: str) -> None:
    sent, inner, _ = _call(_app(lookups), path, {}, method="GET")
    assert sent[0]["status"] == 204 and len(inner) == 1
    assert lookups.calls == []


def test_a_database_that_does_not_answer_gets_the_apps_503(lookups: _Lookups) -> None:
    lookups.error = OperationalError("SELECT", {}, Exception("connection refused"))
    sent, inner, asked = _call(
        _app(lookups), "/v1/jobs", {"Authorization": f"Bearer {generate_key()}"}
    )
    status, headers, body = _answer(sent)
    assert status == 503 and headers["retry-after"] == "2"
    assert body == {"detail": "database unavailable: Exception"}
    assert (inner, asked) == ([], 0)


def test_other_errors_of_the_lookup_are_raised(lookups: _Lookups) -> None:
    lookups.error = RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        _call(_app(lookups), "/v1/jobs", {"Authorization": f"Bearer {generate_key()}"})


def _request(app: FastAPI, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request to ``app``, in process."""

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(call())


def _whoami_app(keys: _Lookups) -> FastAPI:
    """A minimal app with one keyed route that reads a JSON body, and the middleware."""
    app = FastAPI()
    app.add_middleware(Authentication)
    app.state.keys = keys

    @app.post("/v1/whoami")
    def whoami(principal: deps.Reader, body: dict[str, int]) -> dict[str, str]:
        return {"tenant": principal.tenant}

    @app.post("/v1/submit")
    def submit(principal: deps.Submitter) -> dict[str, str]:
        return {"tenant": principal.tenant}

    return app


def test_one_lookup_per_request_and_scopes_checked_by_the_dependency(lookups: _Lookups) -> None:
    app = _whoami_app(lookups)
    key = {"Authorization": "Bearer qk_reader-key-1234567890"}
    answer = _request(app, "POST", "/v1/whoami", json={"a": 1}, headers=key)
    assert answer.status_code == 200 and answer.json() == {"tenant": "acme"}
    assert len(lookups.calls) == 1
    refused = _request(app, "POST", "/v1/submit", headers=key)  # a reader lacks the submit scope
    assert refused.status_code == 403
    assert refused.json() == {"detail": "key qk_reader1... lacks the 'submit' scope"}
    assert len(lookups.calls) == 2


def test_invalid_json_gets_401_without_a_key_and_422_with_one(lookups: _Lookups) -> None:
    app = _whoami_app(lookups)
    json_type = {"Content-Type": "application/json"}
    without = _request(app, "POST", "/v1/whoami", content=b"{not json", headers=json_type)
    assert without.status_code == 401 and without.headers["WWW-Authenticate"] == "Bearer"
    key = {**json_type, "Authorization": "Bearer qk_reader-key-1234567890"}
    with_key = _request(app, "POST", "/v1/whoami", content=b"{not json", headers=key)
    assert with_key.status_code == 422, with_key.text


def test_the_dependency_still_refuses_a_request_the_middleware_did_not_check(
    lookups: _Lookups,
) -> None:
    """Without the middleware (another app), the dependency looks the key up itself."""
    app = FastAPI()
    app.state.keys = lookups

    @app.get("/v1/whoami")
    def whoami(principal: deps.Reader) -> dict[str, str]:
        return {"tenant": principal.tenant}

    missing = _request(app, "GET", "/v1/whoami")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert missing.json() == {"detail": "missing API key: send Authorization: Bearer <key>"}
    nobody = {"Authorization": "Bearer qk_nobody-at-all"}
    unknown = _request(app, "GET", "/v1/whoami", headers=nobody)
    assert unknown.status_code == 401
    assert unknown.json() == {"detail": "invalid or revoked API key qk_nobody-..."}
    reader = {"Authorization": "Bearer qk_reader-key-1234567890"}
    known = _request(app, "GET", "/v1/whoami", headers=reader)
    assert known.status_code == 200 and known.json() == {"tenant": "acme"}
