"""The whole platform on one machine: embedded Postgres and broker (unless URLs are given),
the API, the orchestrator and node agents, each a child process.

``qorch up``, ``qorch demo`` and the end-to-end tests all start the platform through ``Stack``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import httpx
from pydantic import SecretStr

from qorch.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from qorchestra.apikeys import generate_key
from qorchestra.config import Settings
from qorchestra.store import credentials
from qorchestra.store.db import make_engine, make_session_factory, session_scope
from qorchestra.store.migrate import upgrade

logger = logging.getLogger(__name__)

#: Secrets no child inherits: the admin key goes to the API (which registers it), a node
#: credential to its own agent (enrolled by the stack), API keys to none.
_KEYS_ENV = frozenset({"QORCH_ADMIN_KEY", "QORCH_API_KEY", "QORCH_NODE_CREDENTIAL"})


#: The agents a stack starts unless told otherwise (``qorch up``, ``qorch demo``): every local
#: pool is served, the state vector by two agents, the density matrix by one.
DEFAULT_POOLS: Mapping[str, int] = {"local-sv": 2, "local-dm": 1}

#: A pool name as a job names it: a local simulator, an AWS device pool or an emulated device.
_POOL_NAME = re.compile(r"(local-sv|local-dm|(aws|emu)-[a-z0-9][a-z0-9-]*)")

#: How many agents a ``--pool POOL`` without ``=COUNT`` gets unless ``--nodes`` says (as before
#: ``POOL=COUNT`` existed, when ``--nodes`` defaulted to 2).
DEFAULT_POOL_AGENTS = 2


def agent_pools(counts: Mapping[str, int]) -> list[str]:
    """One pool name per agent, e.g. ``{"local-sv": 2, "local-dm": 1}`` -> sv, sv, dm."""
    return [pool for pool, count in counts.items() for _ in range(count)]


def parse_pool_count(spec: str) -> tuple[str, int | None]:
    """``POOL=COUNT`` or ``POOL`` (``qorch up --pool``): the pool and its agent count, None
    where not given. ValueError for anything else."""
    pool, sep, text = spec.strip().partition("=")
    pool = pool.strip()
    if not _POOL_NAME.fullmatch(pool):
        raise ValueError(
            f"--pool {spec!r}: expected POOL=COUNT with POOL local-sv, local-dm, aws-<device> "
            "or emu-<profile>"
        )
    if not sep:
        return pool, None
    try:
        count = int(text)
    except ValueError:
        raise ValueError(f"--pool {spec!r}: COUNT must be a whole number") from None
    if count < 0:
        raise ValueError(f"--pool {spec!r}: COUNT must be 0 or more")
    return pool, count


def parse_pools(specs: Sequence[str], nodes: int | None = None) -> list[str]:
    """The agents' pools for ``qorch up`` / ``qorch demo`` options.

    ``specs`` are the ``--pool`` values (``POOL=COUNT``, repeatable); none: :data:`DEFAULT_POOLS`.
    ``nodes`` (the older ``--nodes N``) is the count of every ``--pool POOL`` given without
    ``=COUNT`` (default :data:`DEFAULT_POOL_AGENTS`), or, with no ``--pool``, of ``local-sv``
    next to the default others. ValueError for a malformed or repeated pool, and for ``nodes``
    that no pool would take.
    """
    if nodes is not None and nodes < 0:
        raise ValueError(f"--nodes {nodes}: must be 0 or more")
    if not specs:
        defaults = dict(DEFAULT_POOLS)
        if nodes is not None:
            defaults["local-sv"] = nodes
        return agent_pools(defaults)
    uncounted = DEFAULT_POOL_AGENTS if nodes is None else nodes
    counts: dict[str, int] = {}
    for spec in specs:
        pool, count = parse_pool_count(spec)
        if pool in counts:
            raise ValueError(f"--pool {pool} is given twice")
        counts[pool] = uncounted if count is None else count
    if nodes is not None and all("=" in spec for spec in specs):
        raise ValueError("--nodes applies to a --pool without =COUNT; every --pool has one")
    return agent_pools(counts)


@dataclass
class Service:
    """One child process of the stack."""

    name: str
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # this child only, over the stack's


@dataclass
class StackOptions:
    """What to start."""

    #: One entry per agent, its pool (node-1, node-2, ... in this order).
    pools: list[str] = field(default_factory=lambda: agent_pools(DEFAULT_POOLS))
    data_dir: Path | None = None  # None: a temporary Postgres cluster, deleted at stop
    log_dir: Path | None = None  # None: children log to this process's stderr
    free_ports: bool = False  # pick free API/gRPC ports instead of the configured ones
    env: dict[str, str] = field(default_factory=dict)  # extra env for every child
    #: Give the orchestrator and each agent a ``/metrics`` port of its own (the API serves
    #: ``/metrics`` on its own port anyway): consecutive ports from the settings'
    #: ``metrics_port`` when that is set, else free ones. ``free_ports`` implies it, with free
    #: ports. Off, every child inherits ``metrics_port`` (0 = no ``/metrics``).
    metrics_ports: bool = False


class Stack:
    """Starts and stops the platform. Use as a context manager."""

    def __init__(self, settings: Settings, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        updates: dict[str, object] = {}
        if self.options.free_ports:
            updates.update(api_port=free_port(), grpc_port=free_port())
        if not settings.admin_key.get_secret_value():  # nothing runs open: make an admin key
            updates["admin_key"] = SecretStr(generate_key())
        self.settings = settings.model_copy(update=updates)
        self._postgres: EmbeddedPostgres | None = None
        self._broker: EmbeddedBroker | None = None
        self.services: list[Service] = []
        self._next_metrics_port = self.settings.metrics_port

    @property
    def api_url(self) -> str:
        return self.settings.client_api_url()

    @property
    def grpc_target(self) -> str:
        return self.settings.client_grpc_target()

    @property
    def admin_key(self) -> str:
        """The admin key the API registered (``QORCH_ADMIN_KEY``, or one made for this stack)."""
        return self.settings.admin_key.get_secret_value()

    def start(self, timeout: float = 120.0) -> Stack:
        """Start everything and wait until the API is ready and every agent has reported."""
        try:
            self._start_infrastructure()
            upgrade(self.settings.database_url)
            self.services = [
                Service("api", ["api"], env={"QORCH_ADMIN_KEY": self.admin_key}),
                Service("orchestrator", ["orchestrator"]),
            ] + [
                Service(f"node-{i + 1}", ["node", "--pool", pool, "--node-id", f"node-{i + 1}"])
                for i, pool in enumerate(self.options.pools)
            ]
            self._enroll([s for s in self.services if s.args[0] == "node"])
            for service in self.services[1:]:  # the API serves /metrics on its own port
                self._give_metrics_port(service)
            for service in self.services:
                self._spawn(service)
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _give_metrics_port(self, service: Service) -> None:
        """A ``/metrics`` port of the service's own, when the options ask for one."""
        if self.options.free_ports or (self.options.metrics_ports and not self._next_metrics_port):
            port = free_port()
        elif self.options.metrics_ports:
            port = self._next_metrics_port
            self._next_metrics_port += 1
        else:
            return
        service.env["QORCH_METRICS_PORT"] = str(port)

    def _start_infrastructure(self) -> None:
        updates: dict[str, object] = {}
        if not self.settings.database_url:
            self._postgres = EmbeddedPostgres(self.options.data_dir).start()
            updates["database_url"] = self._postgres.url
        if not self.settings.kafka_bootstrap:
            self._broker = EmbeddedBroker().start()
            updates["kafka_bootstrap"] = self._broker.bootstrap
        self.settings = self.settings.model_copy(update=updates)

    def child_env(self) -> dict[str, str]:
        """Environment of every child: this process's, plus every setting of the stack. The
        admin key goes only to the API (``Service.env``), API keys to none."""
        env = {k: v for k, v in os.environ.items() if k not in _KEYS_ENV}
        for name, value in self.settings.model_dump().items():
            if f"QORCH_{name.upper()}" in _KEYS_ENV:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            text = json.dumps(value) if isinstance(value, dict | list) else str(value)
            env[f"QORCH_{name.upper()}"] = text
        env.update(self.options.env)
        return env

    def _spawn(self, service: Service) -> None:
        cmd = [sys.executable, "-m", "qorch.cli", *service.args]
        if self.options.log_dir is not None:
            self.options.log_dir.mkdir(parents=True, exist_ok=True)
            service.log_path = self.options.log_dir / f"{service.name}.log"
            out = open(service.log_path, "ab")  # noqa: SIM115 - handed to the child
        else:
            out = None
        # A session of its own: a terminal's Ctrl-C reaches only this supervisor, which then
        # stops the children in order (agents first, so they can release their fragments).
        service.proc = subprocess.Popen(
            cmd,
            env={**self.child_env(), **service.env},
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
        if out is not None:
            out.close()
        logger.info("started %s", service.name, extra={"pid": service.proc.pid})

    def _enroll(self, services: list[Service]) -> None:
        """Give each agent a node credential of its pool, named after the service; the
        credentials an earlier stack on this database issued under those names are revoked."""
        if not services:
            return
        engine = make_engine(self.settings.database_url)
        try:
            with session_scope(make_session_factory(engine)) as session:
                for service in services:
                    name = f"qorch up: {service.name}"
                    credentials.revoke_named(session, name, now=datetime.now(UTC))
                    pool = service.args[service.args.index("--pool") + 1]
                    _row, token = credentials.enroll_node(session, pool, name)
                    service.env["QORCH_NODE_CREDENTIAL"] = token
        finally:
            engine.dispose()

    def add_service(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Service:
        """Start one more child (e.g. a second ``orchestrator``, an agent: ``["node",
        "--pool", pool]``, enrolled here, or an ``api`` with ports of its own in ``env``) next
        to the others; with ``free_ports`` or ``metrics_ports`` an orchestrator or agent
        serves metrics on a port of its own. It is stopped with the rest."""
        service = Service(name, args, env=dict(env or {}))
        if args[0] == "node":
            self._enroll([service])
        if args[0] != "api":  # the API serves /metrics on its own port
            self._give_metrics_port(service)
        self.services.append(service)
        self._spawn(service)
        return service

    def restart(self, name: str) -> None:
        """Start a stopped or killed service again."""
        service = self.service(name)
        if service.proc is not None and service.proc.poll() is None:
            raise RuntimeError(f"{name} is still running")
        self._spawn(service)

    def signal(self, name: str, sig: int) -> None:
        """Send ``sig`` to a running service (SIGKILL, SIGTERM, SIGSTOP, SIGCONT...)."""
        proc = self.service(name).proc
        if proc is None or proc.poll() is not None:
            raise RuntimeError(f"{name} is not running")
        proc.send_signal(sig)

    def metrics_url(self, name: str) -> str:
        """Where the service ``name`` serves Prometheus metrics."""
        if name == "api":
            return f"{self.api_url}/metrics"
        port = self.service(name).env.get("QORCH_METRICS_PORT")
        if not port or port == "0":
            raise RuntimeError(f"{name} serves no metrics (start the stack with metrics_ports)")
        return f"http://127.0.0.1:{port}/metrics"

    def stop_broker(self) -> None:
        """Stop the embedded broker (it keeps nothing); ``start_broker`` brings it back."""
        if self._broker is None:
            raise RuntimeError("the stack runs no embedded broker")
        self._broker.stop()

    def start_broker(self) -> None:
        """Start the embedded broker again, empty, on the same port."""
        if self._broker is None:
            raise RuntimeError("the stack runs no embedded broker")
        self._broker.start()

    def signal_broker(self, sig: int) -> None:
        """Send ``sig`` to the embedded broker: SIGSTOP freezes it (nothing is acknowledged, no
        state is lost), SIGCONT resumes it."""
        if self._broker is None:
            raise RuntimeError("the stack runs no embedded broker")
        self._broker.signal(sig)

    def stop_postgres(self) -> None:
        """Stop the embedded Postgres, keeping its data; ``start_postgres`` brings it back."""
        if self._postgres is None:
            raise RuntimeError("the stack runs no embedded Postgres")
        self._postgres.halt()

    def start_postgres(self) -> None:
        """Start the embedded Postgres again on the same port and data."""
        if self._postgres is None:
            raise RuntimeError("the stack runs no embedded Postgres")
        self._postgres.start()

    def service(self, name: str) -> Service:
        """The child called ``name``."""
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        want = {s.name for s in self.services if s.name.startswith("node-")}
        auth = {"Authorization": f"Bearer {self.admin_key}"}
        with httpx.Client(base_url=self.api_url, timeout=2.0, headers=auth) as client:
            while True:
                for service in self.services:
                    if service.proc is not None and service.proc.poll() is not None:
                        raise RuntimeError(
                            f"{service.name} exited with {service.proc.returncode} during start"
                            + (f"; see {service.log_path}" if service.log_path else "")
                        )
                try:
                    ready = client.get("/readyz").status_code == 200
                    seen = (
                        {n["id"] for n in client.get("/v1/nodes").json()["data"]}
                        if ready
                        else set()
                    )
                    if ready and want <= seen:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the stack was not ready after {timeout}s")
                time.sleep(0.1)

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM every child (agents first), wait, then stop the servers. Safe to call twice."""
        for service in reversed(self.services):
            if service.proc is not None and service.proc.poll() is None:
                service.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for service in reversed(self.services):
            if service.proc is None:
                continue
            try:
                service.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in time; killing it", service.name)
                service.proc.kill()
                service.proc.wait()
        if self._broker is not None:
            self._broker.stop()
            self._broker = None
        if self._postgres is not None:
            self._postgres.stop()
            self._postgres = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
