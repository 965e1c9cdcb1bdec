"""Databases of their own for tests that must not see other tests' jobs (e.g. a running
orchestrator would pick them up)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def database_of_its_own(database_url: str) -> Iterator[str]:
    """A migrated database of its own in the server of ``database_url``, dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    from qorchestra.store.migrate import upgrade

    url = make_url(database_url)
    name = f"qorch_test_{uuid.uuid4().hex[:10]}"
    admin = f"host={url.host} port={url.port} user={url.username} dbname=postgres"
    if url.password:
        admin += f" password={url.password}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    fresh = url.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(fresh)
        yield fresh
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
