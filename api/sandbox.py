"""Parsing untrusted programs with a time bound and a memory limit, in worker processes.

Braket's interpreter unrolls loops while it builds a circuit, so a short program such as
``for int i in [0:100000000] { x q[0]; }`` keeps a thread busy for minutes, and a thread cannot
be stopped. Submitted programs are therefore parsed first in a worker process: one that takes
longer than the bound is killed (and replaced) and the program is refused.

The workers are shared by every tenant, so no tenant may hold them all (DESIGN.md, Trust):

- a parse outcome is cached by (tenant, hash of the source, device): a program parsed before
  costs nothing; a program that parsed is remembered in this process too (``qasm.remember``),
  so validation does not parse it again;
- a caller waits at most ``wait_s`` for a worker (then :class:`WorkersBusy`, answered 503 with
  Retry-After), and at most until its request's ``deadline`` (the request's parse budget);
- the workers are handed out round robin between the tenants waiting (:class:`FairQueue`), and
  one tenant holds at most ``tenant_workers`` of them at once (default: all but one);
- workers are forked from a *zygote*, a process that imported Braket once: a killed worker's
  replacement is ready in milliseconds, and starting it does not take a core away from the
  API for the seconds an import of Braket costs (where the platform cannot fork and pass file
  descriptors, each worker is a fresh process that imports Braket itself);
- spare workers are started ahead of time, so a killed worker's replacement is ready at once.

A program for an emulated device (pool ``emu-<profile>``) is also judged, in the same worker and
under the same bound, by that device's emulator as a node agent judges it
(``qorchestra.devices.emulation.checked_circuit``): a gate that is not native, two qubits
without a coupler or too many qubits refuse it with the emulator's message. The zygote builds
the emulators of the shipped profiles before it forks, so every worker has them; a worker builds
any other profile's (``QORCH_DEVICE_PROFILES_DIR``) the first time it is asked about it, from
the properties the API then sends it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict, deque
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from cachetools import LRUCache

from qorchestra import qasm
from qorchestra.devices import SHIPPED_PROFILES, DeviceProfile
from qorchestra.devices.profiles import DeviceGates
from qorchestra.qasm import ProgramError, ProgramInfo, source_digest

if TYPE_CHECKING:
    from braket.emulation.local_emulator import LocalEmulator

logger = logging.getLogger(__name__)

#: How long the zygote or a fresh worker may take to import Braket (it imports before it
#: serves anyone, so this is never counted against a request).
START_TIMEOUT_S = 120.0
#: Parse outcomes remembered, by tenant and hash of the source (jobs often repeat one program).
CACHE_SIZE = 1024
#: Default of ``wait_s``: how long a caller waits for a worker before WorkersBusy.
WAIT_S = 2.0
#: How long the zygote may take to fork a worker (milliseconds, normally) before it is given
#: up for fresh processes.
FORK_TIMEOUT_S = 10.0
#: Parsed by the zygote before it forks anyone, so that no worker loads the grammar itself.
WARM_UP_PROGRAM = "OPENQASM 3.0;\ninput float a;\nqubit[2] q;\nrx(a) q[0];\ncnot q[0], q[1];\n"
#: Device emulators a worker keeps, by the digest of their properties (the shipped profiles'
#: and those of ``QORCH_DEVICE_PROFILES_DIR`` it was asked about).
EMULATORS_KEPT = 16

T = TypeVar("T")


class WorkersBusy(Exception):
    """No parse worker came free in time (answered 503 with ``Retry-After``): the service is
    busy, the program is not at fault."""

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class BudgetSpent(ProgramError):
    """The request's parse budget ran out while this program was parsing (answered 422)."""


class Closed(RuntimeError):
    """The sandbox is closed."""

    def __init__(self) -> None:
        super().__init__("the program sandbox is closed")


CacheKey = tuple[str, str, str]


class ParseCache:
    """Bounded LRU of parse outcomes (a ProgramInfo, or the error message of a refusal), by
    (tenant, sha256 of the source, device). Thread-safe. Keyed by tenant, so one tenant can
    neither learn from timing which programs another submitted nor plant a refusal for another;
    by device (:func:`device_key`), since a program native to one device may not be to
    another."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: LRUCache[CacheKey, ProgramInfo | str] = LRUCache(maxsize=size)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(tenant: str, source: str, device: str = "") -> CacheKey:
        return tenant, source_digest(source), device

    def get(self, key: CacheKey) -> ProgramInfo | str | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
            return value

    def put(self, key: CacheKey, value: ProgramInfo | str) -> None:
        with self._lock:
            self._items[key] = value

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def device_key(device: DeviceProfile | None) -> str:
    """How the parse cache names the device a program is judged for: its pool and the digest
    of its properties (a profile file that changes is another device); "" for none."""
    return "" if device is None else f"{device.pool}@{device.digest}"


@dataclasses.dataclass
class _Ticket(Generic[T]):
    tenant: str
    limit: int
    item: T | None = None


class FairQueue(Generic[T]):
    """Idle items (workers) handed to waiting callers round robin between tenants: a tenant's
    backlog never stands in front of another tenant's first caller, and a tenant holds at most
    ``limit`` items at once (the cap its callers pass). Thread-safe; pure logic."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._idle: deque[T] = deque()
        self._waiting: OrderedDict[str, deque[_Ticket[T]]] = OrderedDict()
        self._held: dict[str, int] = {}
        self._closed = False

    @property
    def queue(self) -> list[T]:
        """The idle items (a copy)."""
        with self._cond:
            return list(self._idle)

    def held(self, tenant: str) -> int:
        with self._cond:
            return self._held.get(tenant, 0)

    def waiting(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._waiting.values())

    def put(self, item: T) -> None:
        """Add an idle item (a new worker, or one given back by ``release``)."""
        with self._cond:
            self._idle.append(item)
            self._dispatch()

    def get(self, tenant: str, timeout: float, limit: int | None = None) -> T:
        """An idle item for ``tenant`` once its turn comes; TimeoutError after ``timeout``
        seconds, Closed once the queue is closed. Give it back with ``release``."""
        end = time.monotonic() + timeout
        with self._cond:
            if self._closed:
                raise Closed()
            ticket: _Ticket[T] = _Ticket(tenant, limit if limit is not None else 1 << 30)
            self._waiting.setdefault(tenant, deque()).append(ticket)
            self._dispatch()
            while ticket.item is None:
                left = end - time.monotonic()
                if self._closed or left <= 0:
                    self._withdraw(ticket)
                    if self._closed:
                        raise Closed()
                    raise TimeoutError(f"no worker came free within {timeout:.3g}s")
                self._cond.wait(left)
            return ticket.item

    def release(self, tenant: str, item: T | None) -> None:
        """``tenant`` is done with an item: it becomes idle again (None: it is gone, and a
        replacement will be ``put`` later)."""
        with self._cond:
            self._held[tenant] = self._held.get(tenant, 1) - 1
            if self._held[tenant] <= 0:
                del self._held[tenant]
            if item is not None:
                self._idle.append(item)
            self._dispatch()

    def close(self) -> list[T]:
        """Wake every waiter with Closed; returns the idle items (for the caller to stop)."""
        with self._cond:
            self._closed = True
            idle = list(self._idle)
            self._idle.clear()
            self._cond.notify_all()
            return idle

    def _withdraw(self, ticket: _Ticket[T]) -> None:
        tickets = self._waiting.get(ticket.tenant)
        if tickets is not None and ticket in tickets:
            tickets.remove(ticket)
            if not tickets:
                del self._waiting[ticket.tenant]

    def _dispatch(self) -> None:
        """Hand idle items to waiting tenants in turn (a tenant served goes to the back)."""
        served = False
        while self._idle and self._waiting:
            for tenant, tickets in self._waiting.items():
                if self._held.get(tenant, 0) < tickets[0].limit:
                    break
            else:
                break  # every waiting tenant holds its share
            ticket = tickets.popleft()
            ticket.item = self._idle.popleft()
            self._held[tenant] = self._held.get(tenant, 0) + 1
            del self._waiting[tenant]
            if tickets:
                self._waiting[tenant] = tickets  # to the back of the round
            served = True
        if served or self._closed:
            self._cond.notify_all()


class Emulators:
    """The device emulators of one parse worker (``LocalEmulator``, built by
    ``qorchestra.devices.emulation``), by the digest of the device's properties
    (``DeviceProfile.digest``): at most :data:`EMULATORS_KEPT`, the least recently used given
    up first. Owned by the worker's loop, which is single-threaded."""

    def __init__(self) -> None:
        # each with its device's gates, which programs are compiled for
        self._kept: OrderedDict[str, tuple[LocalEmulator, DeviceGates]] = OrderedDict()

    @classmethod
    def shipped(cls) -> Emulators:
        """The emulators of the shipped profiles, each used once (Braket builds parts of its
        interpreter and passes on first use): built by the zygote before it forks, or by a
        fresh worker before it serves. A profile whose emulator cannot be built is left out
        (a program for it is refused with Braket's message when it comes)."""
        emulators = cls()
        for profile in SHIPPED_PROFILES.values():
            try:
                emulators.add(profile.digest, profile.emulator_properties())
            except Exception as exc:
                logger.error("no emulator of %s for parse workers: %s", profile.pool, exc)
                continue
            _refusal(emulators, profile.digest, WARM_UP_PROGRAM, None)  # compiled, checked
        return emulators

    def get(self, digest: str) -> tuple[LocalEmulator, DeviceGates] | None:
        """The emulator kept as ``digest``, with its device's gates."""
        kept = self._kept.get(digest)
        if kept is not None:
            self._kept.move_to_end(digest)
        return kept

    def add(self, digest: str, properties: dict[str, Any]) -> tuple[LocalEmulator, DeviceGates]:
        """The emulator built from ``properties``, kept as ``digest``, with the device's
        gates; Braket's error when it cannot be built."""
        from qorchestra.devices.emulation import emulator_from_properties

        emulator = emulator_from_properties(properties)
        gates = DeviceGates.of(properties)
        self._kept[digest] = (emulator, gates)
        while len(self._kept) > EMULATORS_KEPT:
            self._kept.popitem(last=False)
        return emulator, gates

    def __contains__(self, digest: object) -> bool:
        return digest in self._kept


def judge(request: dict[str, Any], emulators: Emulators, memory_mb: int) -> dict[str, Any]:
    """A worker's answer to one request, ``{"source": ...}`` plus, for an emulated device,
    ``"device"`` (its digest) and, when asked for, ``"properties"``:

    - ``{"ok": ProgramInfo as a dict}``: it parsed (and the device can run it);
    - ``{"error": message}``: it does not parse, or needs more than ``memory_mb`` to;
    - ``{"refused": message}``: the device's emulator refuses it, with the emulator's message;
    - ``{"need": "properties"}``: this worker has no emulator of the device yet: send the
      request again with the device's properties.
    """
    source: str = request["source"]
    digest: str | None = request.get("device")
    properties: dict[str, Any] | None = request.get("properties")
    if digest is not None and digest not in emulators and properties is None:
        return {"need": "properties"}  # before the parse: the next request parses again
    try:
        info = qasm.analyze(source)
        if digest is not None:
            refusal = _refusal(emulators, digest, source, properties)
            if refusal is not None:
                return {"refused": refusal}
        return {"ok": dataclasses.asdict(info)}
    except ProgramError as exc:
        return {"error": str(exc)}
    except MemoryError:
        return {"error": f"the program needs more than {memory_mb} MiB to parse"}
    except Exception as exc:
        return {"error": f"the program cannot be parsed: {type(exc).__name__}"}


def _refusal(
    emulators: Emulators, digest: str, source: str, properties: dict[str, Any] | None
) -> str | None:
    """Why the emulator of device ``digest`` (built from ``properties`` when ``emulators``
    has none) refuses ``source``: its message (``checked_circuit``, as a node agent checks
    a program); None when the device runs it."""
    try:
        from qorchestra.devices.emulation import NotNative, checked_circuit

        kept = emulators.get(digest)
        if kept is None:
            kept = emulators.add(digest, properties or {})
    except MemoryError:
        raise
    except Exception as exc:  # Braket raises ValueError, pydantic's errors, ImportError ...
        return f"Braket cannot build the device's emulator: {exc}"
    try:
        emulator, gates = kept
        checked_circuit(emulator, source, gates)
    except NotNative as exc:
        return str(exc)
    return None


def _serve(inbox: Connection, outbox: Connection, memory_mb: int, emulators: Emulators) -> None:
    """Worker loop: receive a request (JSON), answer what :func:`judge` says, as JSON."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[0])
        limit = pages * resource.getpagesize() + memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, OSError, ValueError):  # not Linux: the time bound still holds
        pass
    outbox.send_bytes(b'"ready"')
    while True:
        try:
            request = json.loads(inbox.recv_bytes())
        except EOFError:
            return
        outbox.send_bytes(json.dumps(judge(request, emulators, memory_mb)).encode())


def _zygote(control: socket.socket, memory_mb: int) -> None:
    """Zygote loop: import Braket once, then fork a ready worker for each message received on
    ``control`` (a SOCK_SEQPACKET socket), answering with its pid and the API's ends of its two
    pipes (SCM_RIGHTS). Ends when the API closes ``control``. Single-threaded, so it forks
    safely."""
    from qorchestra.qasm import analyze

    analyze(WARM_UP_PROGRAM)  # load the grammar once, for every worker
    emulators = Emulators.shipped()  # and the shipped devices' emulators
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the workers
    control.sendall(b"ready")
    while control.recv(1):
        to_child, to_worker = os.pipe()
        from_worker, from_child = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                control.close()
                os.close(to_worker)
                os.close(from_worker)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                inbox = Connection(to_child, writable=False)
                _serve(inbox, Connection(from_child, readable=False), memory_mb, emulators)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(to_child)
        os.close(from_child)
        socket.send_fds(control, [str(pid).encode()], [to_worker, from_worker])
        os.close(to_worker)
        os.close(from_worker)


class _Forked:
    """A worker forked by the zygote (not this process's child), held by a pidfd: signals
    reach that process even once its pid is reused. The part of ``subprocess.Popen`` used."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._fd: int | None = os.pidfd_open(pid)

    def poll(self) -> int | None:
        """None while it runs, else 1 (the zygote, its parent, has its exit status)."""
        if self._fd is None:
            return 1
        readable, _, _ = select.select([self._fd], [], [], 0)
        return 1 if readable else None

    def kill(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._fd, signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        """Wait until it ended (at most ``timeout`` seconds), then let go of the pidfd."""
        if self._fd is None:
            return 1
        select.select([self._fd], [], [], timeout)
        os.close(self._fd)
        self._fd = None
        return 1


class _Zygote:
    """A process that imported Braket once and forks parse workers on request (``fork``).
    Thread-safe. ``usable()`` says whether this platform can fork and pass descriptors."""

    def __init__(self, memory_mb: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.sandbox", "zygote", str(theirs.fileno()), str(memory_mb)],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self._control = ours
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.failed = False

    @staticmethod
    def usable() -> bool:
        needs = ((os, "fork"), (os, "pidfd_open"), (socket, "send_fds"), (socket, "SOCK_SEQPACKET"))
        return all(hasattr(module, name) for module, name in needs)

    def wait_ready(self) -> None:
        """Block until the zygote imported Braket; RuntimeError when it did not."""
        with self._lock:
            if self._ready.is_set():
                return
            self._control.settimeout(START_TIMEOUT_S)
            try:
                ok = self._control.recv(5) == b"ready"
            except OSError:
                ok = False
            if not ok:
                self.failed = True
                raise RuntimeError("the parsers' zygote did not start")
            self._control.settimeout(FORK_TIMEOUT_S)
            self._ready.set()

    def fork(self) -> tuple[_Forked, int, int]:
        """A new worker: its process, and the descriptors to write to and read from it.
        RuntimeError once the zygote is gone."""
        self.wait_ready()
        fds: list[int] = []
        with self._lock:
            try:
                self._control.sendall(b"f")
                message, fds, _flags, _address = socket.recv_fds(self._control, 32, 2)
                if len(fds) != 2 or not message:
                    raise OSError("the zygote answered no worker")
                return _Forked(int(message)), fds[0], fds[1]
            except (OSError, ValueError) as exc:
                for fd in fds:
                    os.close(fd)
                self.failed = True
                raise RuntimeError(f"the parsers' zygote is gone: {exc}") from exc

    def close(self) -> None:
        self._control.close()
        self.proc.kill()
        self.proc.wait(5)


class _Worker:
    """One parser process, spoken to over two pipes (its stdout stays free for its logs):
    forked by the zygote, or a fresh process (``zygote`` None) that imports Braket itself."""

    def __init__(self, memory_mb: int, zygote: _Zygote | None = None) -> None:
        self.proc: subprocess.Popen[bytes] | _Forked
        if zygote is not None:
            self.proc, to_worker, from_worker = zygote.fork()
        else:
            to_child, to_worker = os.pipe()
            from_worker, from_child = os.pipe()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api.sandbox", str(to_child), str(from_child)]
                + [str(memory_mb)],
                pass_fds=(to_child, from_child),
                stdin=subprocess.DEVNULL,
            )
            os.close(to_child)
            os.close(from_child)
        self.send = Connection(to_worker, readable=False)
        self.recv = Connection(from_worker, writable=False)
        self.ready = False
        self.busy_since = 0.0  # monotonic time its current parse began

    def wait_ready(self) -> None:
        if self.ready:
            return
        if not self.recv.poll(START_TIMEOUT_S) or json.loads(self.recv.recv_bytes()) != "ready":
            raise RuntimeError("a parser process did not start")
        self.ready = True

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(5)
        self.send.close()
        self.recv.close()


class ProgramSandbox:
    """``analyze`` in worker processes: at most ``timeout_s`` per program, ``memory_mb`` more
    memory than a fresh worker holds. Workers are forked from a zygote that imported Braket
    (fresh processes where that cannot be done); ``spares`` workers are started ahead of time
    to replace killed ones at once; a tenant holds at most ``tenant_workers`` workers at once
    (0: all but one, at least one). Thread-safe; ``close()`` is safe to call twice."""

    def __init__(
        self,
        workers: int = 2,
        timeout_s: float = 5.0,
        memory_mb: int = 2048,
        *,
        spares: int = 1,
        tenant_workers: int = 0,
        wait_s: float = WAIT_S,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self.timeout_s = timeout_s
        self.wait_s = wait_s
        self.tenant_workers = tenant_workers
        self._memory_mb = memory_mb
        self._size = workers
        self._spare_count = spares
        self._idle: FairQueue[_Worker] = FairQueue()
        self._spares: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._starting: list[threading.Thread] = []
        self._start_errors: list[str] = []
        self.cache = ParseCache(cache_size)
        self.killed = 0  # workers killed for running past the bound (or the request's budget)
        self._zygote: _Zygote | None = None

    # -- workers -----------------------------------------------------------------------------

    def _new_worker(self) -> _Worker:
        """A worker forked by the zygote, or a fresh process where there is no zygote (or
        it is gone)."""
        zygote = self._zygote
        if zygote is not None and not zygote.failed:
            try:
                return _Worker(self._memory_mb, zygote)
            except RuntimeError as exc:
                logger.error("%s; parse workers are fresh processes from now on", exc)
        return _Worker(self._memory_mb)

    def _launch(self, spare: bool) -> threading.Thread:
        """Start a worker; once it is ready (forked, or it has imported Braket) it joins the
        idle workers (or the spares). Its start is never waited for by a request."""

        def become_ready() -> None:
            worker: _Worker | None = None
            try:
                worker = self._new_worker()
                worker.wait_ready()
            except (RuntimeError, EOFError, OSError, ValueError) as exc:
                logger.error("a parser process did not start: %s", exc)
                self._start_errors.append(str(exc))
                if worker is not None:
                    worker.kill()
                if not self._closed and len(self._start_errors) < 10:  # keep the pool's size
                    self._launch(spare)
                return
            with self._lock:
                closed = self._closed
                if not closed and spare:
                    self._spares.append(worker)
            if closed:
                worker.kill()
            elif not spare:
                self._idle.put(worker)

        thread = threading.Thread(target=become_ready, name="parser-start", daemon=True)
        thread.start()
        return thread

    def _replace(self) -> None:
        """A worker was killed: a ready spare takes its place at once; a new spare starts."""
        with self._lock:
            if self._closed:
                return
            spare = self._spares.pop() if self._spares else None
        if spare is not None:
            self._idle.put(spare)
            self._launch(spare=True)
        else:
            self._launch(spare=False)

    def start(self) -> ProgramSandbox:
        """Start the zygote, then the workers and spares, in the background; idempotent."""
        with self._lock:
            if self._started or self._closed:
                return self
            self._started = True
            if _Zygote.usable():
                self._zygote = _Zygote(self._memory_mb)
        self._starting = [self._launch(spare=False) for _ in range(self._size)]
        self._starting += [self._launch(spare=True) for _ in range(self._spare_count)]
        return self

    def wait_ready(self) -> None:
        """Start the workers and block until each (spares included) is ready (a service calls
        this before it serves). Raises RuntimeError when a worker did not start."""
        self.start()
        for thread in self._starting:
            thread.join()
        if self._start_errors:
            raise RuntimeError("a parser process did not start")

    # -- parsing -----------------------------------------------------------------------------

    def analyze(
        self,
        source: str,
        *,
        tenant: str = "",
        deadline: float | None = None,
        wait_s: float | None = None,
        tenant_workers: int | None = None,
        device: DeviceProfile | None = None,
    ) -> ProgramInfo:
        """Braket's view of ``source``; ProgramError when it is invalid, needs too much memory
        or takes longer than the bound to parse (BudgetSpent when it ran past ``deadline``, a
        ``time.monotonic()`` instant: the request's parse budget); WorkersBusy when no worker
        came free within ``wait_s`` (or before ``deadline``). With ``device`` (an emulated
        pool's profile), ProgramError too when the device's emulator refuses the program, with
        ``device.refusal`` of the emulator's message. Outcomes are cached per tenant and
        device; a program that parsed is also remembered for ``qasm.analyze`` in this
        process."""
        key = ParseCache.key(tenant, source, device_key(device))
        cached = self.cache.get(key)
        if cached is None:
            cached, keep = self._run(source, tenant, deadline, wait_s, tenant_workers, device)
            if keep:
                self.cache.put(key, cached)
        if isinstance(cached, str):
            raise ProgramError(cached)
        qasm.remember(source, cached)
        return cached

    def _share(self, tenant_workers: int | None) -> int:
        share = self.tenant_workers if tenant_workers is None else tenant_workers
        return share if share > 0 else max(1, self._size - 1)

    def _retry_after(self) -> float:
        """Seconds until a busy worker is sure to be free (its parse bound), at least 1."""
        now = time.monotonic()
        with self._lock:
            ends = [w.busy_since + self.timeout_s - now for w in self._busy]
        return max(1.0, min(ends, default=1.0))

    def _run(
        self,
        source: str,
        tenant: str,
        deadline: float | None,
        wait_s: float | None,
        tenant_workers: int | None,
        device: DeviceProfile | None,
    ) -> tuple[ProgramInfo | str, bool]:
        """(outcome, whether to cache it): a refusal for the request's budget is not cached."""
        self.start()
        wait = self.wait_s if wait_s is None else wait_s
        bound = self.timeout_s
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BudgetSpent("not parsed: the request's parse budget was spent")
            wait = min(wait, left)
        try:
            worker = self._idle.get(tenant, wait, self._share(tenant_workers))
        except TimeoutError:
            raise WorkersBusy(
                f"every program parser is busy; none came free within {wait:.3g}s",
                self._retry_after(),
            ) from None
        if deadline is not None:
            bound = min(bound, max(0.0, deadline - time.monotonic()))
        healthy = False
        worker.busy_since = time.monotonic()
        with self._lock:
            self._busy.add(worker)
        try:
            end = worker.busy_since + bound
            request: dict[str, Any] = {"source": source}
            if device is not None:
                request["device"] = device.digest
            answer = _ask(worker, request, end)
            if answer is not None and "need" in answer and device is not None:
                request["properties"] = device.emulator_properties()  # once per worker
                answer = _ask(worker, request, end)
            if answer is None:
                self.killed += 1
                if bound < self.timeout_s:
                    raise BudgetSpent(
                        f"not parsed within the request's parse budget (it had {bound:.3g}s "
                        "left of it); send fewer or simpler programs"
                    )
                logger.warning("a program took longer than %.1fs to parse; refused", bound)
                if device is not None:  # Braket's checks of a long verbatim box are slow too
                    return (
                        f"parsing and the checks of {device.device}'s emulator took longer "
                        f"than {self.timeout_s:g}s; simplify the program"
                    ), True
                return f"parsing took longer than {self.timeout_s:g}s; simplify the program", True
            healthy = True
            if "ok" in answer:
                info = answer["ok"]
                parsed = ProgramInfo(tuple(info["inputs"]), int(info["qubits"]), info["measures"])
                return parsed, True
            if "refused" in answer and device is not None:
                return device.refusal(str(answer["refused"])), True
            return str(answer.get("error", f"the parser answered {sorted(answer)}")), True
        except (EOFError, OSError):
            return "the program cannot be parsed (the parser process ended)", False
        finally:
            with self._lock:
                self._busy.discard(worker)
                closed = self._closed
            if healthy and not closed:
                self._idle.release(tenant, worker)
            else:
                worker.kill()
                self._idle.release(tenant, None)
                self._replace()

    def close(self) -> None:
        """Stop every worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            spares, self._spares = self._spares, []
            zygote, self._zygote = self._zygote, None
        for worker in self._idle.close() + spares:
            worker.kill()
        if zygote is not None:
            zygote.close()


def _ask(worker: _Worker, request: dict[str, Any], end: float) -> dict[str, Any] | None:
    """Send ``request`` to ``worker``; its answer, or None when none came by ``end`` (a
    ``time.monotonic()`` instant). EOFError or OSError when the worker is gone."""
    worker.send.send_bytes(json.dumps(request).encode())
    if not worker.recv.poll(max(0.0, end - time.monotonic())):
        return None
    answer: dict[str, Any] = json.loads(worker.recv.recv_bytes())
    return answer


def _main(argv: list[str]) -> None:
    """Entry point of a worker process: ``python -m api.sandbox IN_FD OUT_FD MIB``, or of the
    zygote: ``python -m api.sandbox zygote SOCKET_FD MIB``."""
    if argv[0] == "zygote":
        _zygote(socket.socket(fileno=int(argv[1])), int(argv[2]))
        return
    inbox = Connection(int(argv[0]), writable=False)
    outbox = Connection(int(argv[1]), readable=False)
    _serve(inbox, outbox, int(argv[2]), Emulators.shipped())


if __name__ == "__main__":
    _main(sys.argv[1:])
