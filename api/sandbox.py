"""Parsing untrusted programs with a time bound and a memory limit, in worker processes.

Braket's interpreter unrolls loops while it builds a circuit, so a short program such as
``for int i in [0:100000000] { x q[0]; }`` keeps a thread busy for minutes, and a thread cannot
be stopped. Submitted programs are therefore parsed first in a worker process: one that takes
longer than the bound is killed (and replaced) and the program is refused.

The workers are shared by every tenant, so no tenant may hold them all (DESIGN.md, Trust):

- a parse outcome is cached by (tenant, hash of the source): a program parsed before costs
  nothing; a program that parsed is remembered in this process too (``qasm.remember``), so
  validation does not parse it again;
- a caller waits at most ``wait_s`` for a worker (then :class:`WorkersBusy`, answered 503 with
  Retry-After), and at most until its request's ``deadline`` (the request's parse budget);
- the workers are handed out round robin between the tenants waiting (:class:`FairQueue`), and
  one tenant holds at most ``tenant_workers`` of them at once (default: all but one);
- spare workers import Braket ahead of time, so a killed worker's replacement is ready at once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import OrderedDict, deque
from multiprocessing.connection import Connection
from typing import Generic, TypeVar

from cachetools import LRUCache

from qorchestra import qasm
from qorchestra.qasm import ProgramError, ProgramInfo, source_digest

logger = logging.getLogger(__name__)

#: How long a fresh worker may take to import Braket (it imports before it serves anyone, so
#: this is never counted against a request).
START_TIMEOUT_S = 120.0
#: Parse outcomes remembered, by tenant and hash of the source (jobs often repeat one program).
CACHE_SIZE = 1024
#: Default of ``wait_s``: how long a caller waits for a worker before WorkersBusy.
WAIT_S = 2.0

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


class ParseCache:
    """Bounded LRU of parse outcomes (a ProgramInfo, or the error message of a refusal), by
    (tenant, sha256 of the source). Thread-safe. Keyed by tenant, so one tenant can neither
    learn from timing which programs another submitted nor plant a refusal for another."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: LRUCache[tuple[str, str], ProgramInfo | str] = LRUCache(maxsize=size)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(tenant: str, source: str) -> tuple[str, str]:
        return tenant, source_digest(source)

    def get(self, key: tuple[str, str]) -> ProgramInfo | str | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
            return value

    def put(self, key: tuple[str, str], value: ProgramInfo | str) -> None:
        with self._lock:
            self._items[key] = value

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


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


def _serve(inbox: Connection, outbox: Connection, memory_mb: int) -> None:
    """Worker loop: receive a source, answer {"ok": info} or {"error": message} as JSON."""
    from qorchestra.qasm import analyze

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
            source = inbox.recv_bytes().decode("utf-8", errors="surrogatepass")
        except EOFError:
            return
        answer: dict[str, object]
        try:
            answer = {"ok": dataclasses.asdict(analyze(source))}
        except ProgramError as exc:
            answer = {"error": str(exc)}
        except MemoryError:
            answer = {"error": f"the program needs more than {memory_mb} MiB to parse"}
        except Exception as exc:
            answer = {"error": f"the program cannot be parsed: {type(exc).__name__}"}
        outbox.send_bytes(json.dumps(answer).encode())


class _Worker:
    """One parser process, spoken to over two pipes (its stdout stays free for its logs)."""

    def __init__(self, memory_mb: int) -> None:
        to_child, self._to_child = os.pipe()
        self._from_child, from_child = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.sandbox", str(to_child), str(from_child)]
            + [str(memory_mb)],
            pass_fds=(to_child, from_child),
            stdin=subprocess.DEVNULL,
        )
        os.close(to_child)
        os.close(from_child)
        self.send = Connection(self._to_child, readable=False)
        self.recv = Connection(self._from_child, writable=False)
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
    memory than a fresh worker holds. ``spares`` workers import Braket ahead of time to replace
    killed ones; a tenant holds at most ``tenant_workers`` workers at once (0: all but one, at
    least one). Thread-safe; ``close()`` is safe to call twice."""

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

    # -- workers -----------------------------------------------------------------------------

    def _launch(self, spare: bool) -> threading.Thread:
        """Start a worker; once it has imported Braket it joins the idle workers (or the
        spares). Its import is never waited for by a request."""
        worker = _Worker(self._memory_mb)

        def become_ready() -> None:
            try:
                worker.wait_ready()
            except (RuntimeError, EOFError, OSError, ValueError) as exc:
                logger.error("a parser process did not start: %s", exc)
                self._start_errors.append(str(exc))
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
        """Start the workers and spares (they import Braket in the background); idempotent."""
        with self._lock:
            if self._started or self._closed:
                return self
            self._started = True
        self._starting = [self._launch(spare=False) for _ in range(self._size)]
        self._starting += [self._launch(spare=True) for _ in range(self._spare_count)]
        return self

    def wait_ready(self) -> None:
        """Start the workers and block until each (spares included) has imported Braket (a
        service calls this before it serves). Raises RuntimeError when a worker did not start."""
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
    ) -> ProgramInfo:
        """Braket's view of ``source``; ProgramError when it is invalid, needs too much memory
        or takes longer than the bound to parse (BudgetSpent when it ran past ``deadline``, a
        ``time.monotonic()`` instant: the request's parse budget); WorkersBusy when no worker
        came free within ``wait_s`` (or before ``deadline``). Outcomes are cached per tenant;
        a program that parsed is also remembered for ``qasm.analyze`` in this process."""
        key = ParseCache.key(tenant, source)
        cached = self.cache.get(key)
        if cached is None:
            cached, keep = self._run(source, tenant, deadline, wait_s, tenant_workers)
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
            worker.send.send_bytes(source.encode("utf-8", errors="surrogatepass"))
            if not worker.recv.poll(bound):
                self.killed += 1
                if bound < self.timeout_s:
                    raise BudgetSpent(
                        f"not parsed within the request's parse budget (it had {bound:.3g}s "
                        "left of it); send fewer or simpler programs"
                    )
                logger.warning("a program took longer than %.1fs to parse; refused", bound)
                return f"parsing took longer than {self.timeout_s:g}s; simplify the program", True
            answer = json.loads(worker.recv.recv_bytes())
            healthy = True
            if "ok" in answer:
                info = answer["ok"]
                parsed = ProgramInfo(tuple(info["inputs"]), int(info["qubits"]), info["measures"])
                return parsed, True
            return str(answer["error"]), True
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
        for worker in self._idle.close() + spares:
            worker.kill()


def _main(argv: list[str]) -> None:
    """Entry point of a worker process: ``python -m api.sandbox IN_FD OUT_FD MIB``."""
    inbox = Connection(int(argv[0]), writable=False)
    outbox = Connection(int(argv[1]), readable=False)
    _serve(inbox, outbox, int(argv[2]))


if __name__ == "__main__":
    _main(sys.argv[1:])
