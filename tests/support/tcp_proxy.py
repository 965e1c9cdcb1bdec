"""A TCP proxy in front of a server, for tests that drop a client's connections: ``cut()``
drops every open connection (both sides), as a broken network or a restarted load balancer
does; new connections are still accepted and forwarded."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType


def _reset(sock: socket.socket) -> None:
    """Drop a connection: shut it down (which also wakes the thread reading it: a close alone
    would wait for that read) and close it with SO_LINGER 0, so what is left goes as a reset."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    """Forwards connections to ``127.0.0.1:<port>`` on to ``target`` (``host:port``)."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self._target = (host or "127.0.0.1", int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._open: list[tuple[socket.socket, socket.socket]] = []
        #: Connections accepted so far.
        self.accepted = 0
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self._target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                if self._closed:
                    _reset(client)
                    _reset(upstream)
                    return
                self.accepted += 1
                self._open.append((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        """Copy bytes one way until either side goes."""
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> int:
        """Drop every open connection; returns how many there were."""
        with self._lock:
            pairs, self._open = self._open, []
        for client, upstream in pairs:
            _reset(client)
            _reset(upstream)
        return len(pairs)

    def close(self) -> None:
        """Stop accepting and drop what is open (safe to call twice)."""
        with self._lock:
            self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()
