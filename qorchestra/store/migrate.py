"""Schema migrations (Alembic) and the check that services run only on a migrated database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

#: Alembic's script folder, ``migrations/`` at the top of the tree (installed beside this
#: package by the wheel). Found by path: the store never imports the migrations, which import
#: the store's models.
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


class SchemaNotReady(RuntimeError):
    """The database is not at the schema version this code expects."""


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at ``migrations/`` and ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    cfg.attributes["url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    """The newest revision in ``migrations/versions``."""
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


def check_schema(engine: Engine) -> None:
    """Raise SchemaNotReady unless the database is at the head revision."""
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    head = head_revision()
    if current != head:
        found = current or "an empty schema"
        raise SchemaNotReady(
            f"database schema is at {found}, this version needs {head}: run `qorch db upgrade`"
        )
