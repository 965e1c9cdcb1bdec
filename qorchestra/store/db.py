"""Engine and session factory. Callers own transactions: ``with session_scope(factory) as s``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from qorchestra.store.migrate import check_schema

SessionFactory = sessionmaker[Session]


def make_engine(url: str, *, pool_size: int = 5, check: bool = True) -> Engine:
    """An engine for ``url``; with ``check`` it refuses an unmigrated database."""
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
    )
    if check:
        check_schema(engine)
    return engine


def fill_pool(engine: Engine, connections: int) -> None:
    """Open ``connections`` connections now, which the pool then keeps: a burst of requests
    finds them ready instead of each opening one (Postgres authenticates every connection,
    milliseconds of CPU on both sides)."""
    with ExitStack() as opened:
        for _ in range(connections):
            opened.enter_context(engine.connect())


def make_session_factory(engine: Engine) -> SessionFactory:
    """Sessions that keep loaded attributes after commit (they are handed to serializers)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: SessionFactory) -> Iterator[Session]:
    """One transaction: committed on success, rolled back on any exception."""
    with factory() as session, session.begin():
        yield session


def check_database(engine: Engine) -> None:
    """Raise unless the database answers and is migrated (SchemaNotReady when it is not)."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    check_schema(engine)
