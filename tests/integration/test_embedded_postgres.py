"""The embedded Postgres needs its password, keeps it private, and syncs persistent data."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from qorch.embedded import EmbeddedPostgres

pytestmark = pytest.mark.integration


def _conninfo(pg: EmbeddedPostgres, password: str | None) -> str:
    info = f"host=127.0.0.1 port={pg.port} user={pg.user} dbname={pg.database}"
    return info if password is None else f"{info} password={password}"


@pytest.fixture(scope="module")
def persistent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres(tmp_path_factory.mktemp("pg")) as pg:
        yield pg


def test_a_login_without_the_password_is_refused(persistent: EmbeddedPostgres) -> None:
    for password in (None, "not-the-password"):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(_conninfo(persistent, password), connect_timeout=5).close()
    with psycopg.connect(_conninfo(persistent, persistent.password)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


def test_the_password_is_kept_for_its_owner_only(persistent: EmbeddedPostgres) -> None:
    mode = stat.S_IMODE(persistent.password_file.stat().st_mode)
    assert mode == 0o600
    assert len(persistent.password) >= 32
    assert persistent.password in persistent.url  # the services log only the masked URL


def test_persistent_data_is_synced(persistent: EmbeddedPostgres) -> None:
    with psycopg.connect(_conninfo(persistent, persistent.password)) as conn:
        assert conn.execute("SHOW fsync").fetchone() == ("on",)


def test_a_restarted_cluster_keeps_its_password(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path) as pg:
        first = pg.password
    with EmbeddedPostgres(tmp_path) as pg:
        assert pg.password == first
        with psycopg.connect(_conninfo(pg, first)) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_cluster_that_trusted_every_login_gets_a_password(tmp_path: Path) -> None:
    """A data dir made by an earlier version (trust, no password file) is closed at start."""
    with EmbeddedPostgres(tmp_path) as pg:
        hba = tmp_path / "pgdata" / "pg_hba.conf"
    # make it look like the old cluster: every login trusted, and no password kept
    text = hba.read_text().replace(" scram-sha-256", " trust")
    hba.write_text(text)
    pg.password_file.unlink()
    with EmbeddedPostgres(tmp_path) as pg:
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(_conninfo(pg, None), connect_timeout=5).close()
        with psycopg.connect(_conninfo(pg, pg.password)) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert " trust" not in "".join(
            line for line in hba.read_text().splitlines() if not line.lstrip().startswith("#")
        )


def test_the_file_initdb_reads_the_password_from_is_deleted(tmp_path: Path) -> None:
    """The password travels to initdb in a file (never in its arguments, which every local
    user can read), deleted as soon as initdb has read it."""
    with EmbeddedPostgres(tmp_path):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["password", "pgdata", "postgres.log"]
