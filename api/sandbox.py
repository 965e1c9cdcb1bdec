"""Parsing untrusted programs with a time bound and a memory limit, in worker processes.

Braket's interpreter unrolls loops while it builds a circuit, so a short program such as
``for int i in [0:100000000] { x q[0]; }`` keeps a thread busy for minutes, and a thread cannot
be stopped. Submitted programs are therefore parsed first in a worker process: one that takes
longer than the bound is killed (and replaced) and the program is refused. A program that
parsed in time is safe to parse again in-process (validation, cutting) in about the same time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import queue
import subprocess
import sys
import threading
from collections import OrderedDict
from multiprocessing.connection import Connection

from qorchestra.qasm import ProgramError, ProgramInfo

logger = logging.getLogger(__name__)

#: How long a fresh worker may take to import Braket (not counted against the parse bound).
START_TIMEOUT_S = 120.0
#: Parse outcomes remembered, by hash of the source (jobs often repeat one program).
CACHE_SIZE = 1024


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
    memory than a fresh worker holds. Thread-safe; ``close()`` is safe to call twice."""

    def __init__(self, workers: int = 2, timeout_s: float = 5.0, memory_mb: int = 2048) -> None:
        self.timeout_s = timeout_s
        self._memory_mb = memory_mb
        self._size = workers
        self._idle: queue.Queue[_Worker | None] = queue.Queue()
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._cache: OrderedDict[str, ProgramInfo | str] = OrderedDict()
        self.killed = 0  # workers killed for running past the bound

    def start(self) -> ProgramSandbox:
        """Start the workers (they import Braket in the background); idempotent."""
        with self._lock:
            if self._started or self._closed:
                return self
            self._started = True
            for _ in range(self._size):
                self._idle.put(_Worker(self._memory_mb))
        return self

    def wait_ready(self) -> None:
        """Start the workers and block until each has imported Braket (a service calls this
        before it serves, so no request waits for an import and no import competes with the
        service's first jobs for the CPU). Raises RuntimeError for a worker that did not start."""
        self.start()
        workers = [self._idle.get() for _ in range(self._size)]
        try:
            for worker in workers:
                if worker is not None:
                    worker.wait_ready()
        finally:
            for worker in workers:
                self._idle.put(worker)

    def analyze(self, source: str) -> ProgramInfo:
        """Braket's view of ``source``; ProgramError when it is invalid, needs too much
        memory, or takes longer than the bound to parse."""
        digest = hashlib.sha256(source.encode("utf-8", errors="surrogatepass")).hexdigest()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is None:
            cached = self._run(source)
            with self._lock:
                self._cache[digest] = cached
                if len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        if isinstance(cached, str):
            raise ProgramError(cached)
        return cached

    def _run(self, source: str) -> ProgramInfo | str:
        self.start()
        worker = self._idle.get()
        if worker is None:  # closed
            self._idle.put(None)
            raise RuntimeError("the program sandbox is closed")
        healthy = False
        try:
            worker.wait_ready()
            worker.send.send_bytes(source.encode("utf-8", errors="surrogatepass"))
            if not worker.recv.poll(self.timeout_s):
                self.killed += 1
                logger.warning("a program took longer than %.1fs to parse; refused", self.timeout_s)
                return f"parsing took longer than {self.timeout_s:g}s; simplify the program"
            answer = json.loads(worker.recv.recv_bytes())
            healthy = True
            if "ok" in answer:
                info = answer["ok"]
                return ProgramInfo(tuple(info["inputs"]), int(info["qubits"]), info["measures"])
            return str(answer["error"])
        except (EOFError, OSError, BrokenPipeError):
            return "the program cannot be parsed (the parser process ended)"
        finally:
            replacement: _Worker | None = worker
            if not healthy or self._closed:
                worker.kill()
                replacement = None if self._closed else _Worker(self._memory_mb)
            self._idle.put(replacement)  # None tells the next caller the sandbox is closed

    def close(self) -> None:
        """Stop every worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                break
            if worker is not None:
                worker.kill()
        self._idle.put(None)


def _main(argv: list[str]) -> None:
    """Entry point of a worker process: ``python -m api.sandbox IN_FD OUT_FD MIB``."""
    inbox = Connection(int(argv[0]), writable=False)
    outbox = Connection(int(argv[1]), readable=False)
    _serve(inbox, outbox, int(argv[2]))


if __name__ == "__main__":
    _main(sys.argv[1:])
