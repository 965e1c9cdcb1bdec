"""Dependencies shared by the routes, as named ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from api.events import EventHub
from qorch.config import Settings
from qorch.kafka import Producer


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
