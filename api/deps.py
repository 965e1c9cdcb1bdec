"""Dependencies shared by the routes, as named ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.auth import KeyCache, Principal
from api.authentication import CHALLENGE, Unauthenticated, authenticated, principal_of
from api.event_hub import EventHub
from api.ratelimit import RateLimiter
from api.sandbox import ProgramSandbox
from api.use_cases import Announcer
from qorchestra.config import Settings
from qorchestra.kafka import Producer


def _session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _producer(request: Request) -> Producer:
    producer: Producer = request.app.state.producer
    return producer


def _hub(request: Request) -> EventHub:
    hub: EventHub = request.app.state.hub
    return hub


SessionDep = Annotated[Session, Depends(_session)]
SettingsDep = Annotated[Settings, Depends(_settings)]
ProducerDep = Annotated[Producer, Depends(_producer)]
HubDep = Annotated[EventHub, Depends(_hub)]


def _sandbox(request: Request) -> ProgramSandbox:
    sandbox: ProgramSandbox = request.app.state.sandbox
    return sandbox


def _keys(request: Request) -> KeyCache:
    keys: KeyCache = request.app.state.keys
    return keys


def _limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.limiter
    return limiter


def _announcer(request: Request) -> Announcer:
    state = request.app.state
    return Announcer(state.producer, state.settings, state.hub, state.signer)


SandboxDep = Annotated[ProgramSandbox, Depends(_sandbox)]
KeysDep = Annotated[KeyCache, Depends(_keys)]
LimiterDep = Annotated[RateLimiter, Depends(_limiter)]
AnnouncerDep = Annotated[Announcer, Depends(_announcer)]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key: `Authorization: Bearer <key>` (docs/security.md).",
)


def _principal(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The one authentication dependency: ``Authorization: Bearer <key>`` -> Principal; 401
    without a key or with an unknown or revoked one (the answer shows only its prefix).

    ``Authentication`` (api/authentication.py) checked the key before the body was read and
    left the principal in the request's state: it is taken from there. The lookup here is a
    fallback for a request the middleware did not check (it never fails open)."""
    principal = authenticated(request.scope)
    if principal is not None:
        return principal
    try:
        return principal_of(request.app.state.keys, request.headers.get("authorization"))
    except Unauthenticated as exc:
        raise HTTPException(401, exc.detail, CHALLENGE) from None


def _require(scope: str) -> Callable[[Principal], Principal]:
    def check(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        if not principal.allows(scope):
            raise HTTPException(403, f"key {principal.prefix}... lacks the {scope!r} scope")
        return principal

    return check


#: Callers with the ``read``, ``submit`` or ``admin`` scope (admin holds all three).
Reader = Annotated[Principal, Depends(_require("read"))]
Submitter = Annotated[Principal, Depends(_require("submit"))]
Admin = Annotated[Principal, Depends(_require("admin"))]
