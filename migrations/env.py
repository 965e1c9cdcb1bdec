"""Alembic environment: runs migrations online against the URL given by ``qorchestra.store``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from qorchestra.store.models import Base

config = context.config
url: str = config.attributes.get("url") or config.get_main_option("sqlalchemy.url") or ""


def run_migrations_online() -> None:
    """Migrate inside one transaction on a dedicated connection."""
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(connection=connectable, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
