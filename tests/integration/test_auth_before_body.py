"""The API key is checked before the body is read, against the served API.

Without a key a request to /v1 is refused with 401 as soon as its headers arrive: the server
neither asks for the body (no ``100 Continue``) nor waits for it, and bodies sent anyway are
not buffered or parsed. The API runs with the default body limit (8 MiB), so a large body
would be read if the key were checked after it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from qorchestra.apikeys import generate_key
from tests.support.api import RunningApi, running_api

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
#: A JSON body just under the default limit (8 MiB) whose parse would cost far more memory
#: than its size: about 4 million list items.
BIG = b"[" + b"0," * (4 * MIB - 2) + b"0]"
#: Seconds to wait for an answer that must come without the body.
ANSWER_TIMEOUT_S = 10.0
MISSING = {"detail": "missing API key: send Authorization: Bearer <key>"}


@pytest.fixture(scope="module")
def api(database_url: str, kafka_bootstrap: str) -> Iterator[RunningApi]:
    with running_api(database_url, kafka_bootstrap) as running:
        assert running.settings.max_request_bytes == 8 * MIB > len(BIG)
        running.keys["submit"] = running.new_key("acme", ["read", "submit"])
        yield running


def _connect(api: RunningApi) -> socket.socket:
    where = urlsplit(api.url)
    assert where.hostname and where.port
    sock = socket.create_connection((where.hostname, where.port), timeout=ANSWER_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _head(path: str, length: int, key: str | None, *extra: str) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: api",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        *([f"Authorization: Bearer {key}"] if key else []),
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class _Reader:
    """HTTP/1.1 answers read off a raw socket, one at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The next answer (an interim ``100 Continue`` too): status, headers, body."""
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._more()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body


def test_invalid_json_without_a_key_gets_401_and_with_one_422(api: RunningApi) -> None:
    bad = {"content": b'{"kind": "circuits", ', "headers": {"Content-Type": "application/json"}}
    for key in (None, generate_key(), "not a key"):
        answer = api.call("POST", "/v1/jobs", key, **bad)
        assert answer.status_code == 401, answer.text
        assert answer.headers["WWW-Authenticate"] == "Bearer"
    answer = api.call("POST", "/v1/jobs", None, **bad)
    assert answer.json() == MISSING
    valid = api.call("POST", "/v1/jobs", api.keys["submit"], **bad)
    assert valid.status_code == 422, valid.text
    assert valid.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize("key", [None, "unknown"])
def test_a_large_body_without_a_key_is_refused_before_it_is_sent(
    api: RunningApi, key: str | None
) -> None:
    """The headers declare 8 MiB and no byte of the body is sent: the 401 comes anyway."""
    sent_key = generate_key() if key == "unknown" else None
    with _connect(api) as sock:
        sock.sendall(_head("/v1/jobs", len(BIG), sent_key))
        status, headers, body = _Reader(sock).answer()  # times out if the server waits
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    if sent_key is None:
        assert json.loads(body) == MISSING
    else:
        assert json.loads(body)["detail"].startswith("invalid or revoked API key")


def test_the_server_asks_for_the_body_only_with_a_valid_key(api: RunningApi) -> None:
    """``Expect: 100-continue``: without a key the answer is 401, not ``100 Continue``."""
    with _connect(api) as sock:
        sock.sendall(_head("/v1/jobs", len(BIG), None, "Expect: 100-continue"))
        status, _, _ = _Reader(sock).answer()
    assert status == 401
    with _connect(api) as sock:
        sock.sendall(_head("/v1/jobs", 2, api.keys["submit"], "Expect: 100-continue"))
        reader = _Reader(sock)
        assert reader.answer()[0] == 100  # go on: the key is good
        sock.sendall(b"{}")
        assert reader.answer()[0] == 422


def test_after_a_401_the_connection_goes_on_past_the_unread_body(api: RunningApi) -> None:
    """A client that sends its body anyway gets its 401, and the connection stays usable."""
    with _connect(api) as sock:
        reader = _Reader(sock)
        sock.sendall(_head("/v1/jobs", len(BIG), None))
        assert reader.answer()[0] == 401
        sock.sendall(BIG)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n")
        status, _, body = reader.answer()
        assert status == 200 and json.loads(body) == {"status": "ok"}


def _rss_mib() -> float:
    """Resident memory of this process, which serves the API in a thread (tests/support/api.py)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_unauthenticated_large_bodies_take_no_memory_and_do_not_stall_the_api(
    api: RunningApi,
) -> None:
    """The defect's load: eight clients without a key each send a whole 8 MiB JSON body.
    Each gets 401; the API's memory does not grow by the bodies; /healthz answers meanwhile."""
    peak: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak.append(_rss_mib())
            time.sleep(0.005)

    answers: list[int] = []

    def flood() -> None:
        with _connect(api) as sock:
            sock.settimeout(60)
            sock.sendall(_head("/v1/jobs", len(BIG), None))
            sock.sendall(BIG)
            answers.append(_Reader(sock).answer()[0])

    baseline = _rss_mib()
    sampler = threading.Thread(target=sample, daemon=True)
    clients = [threading.Thread(target=flood, daemon=True) for _ in range(8)]
    sampler.start()
    for client in clients:
        client.start()
    waits: list[float] = []
    with httpx.Client(base_url=api.url, timeout=30) as http:
        while not waits or any(client.is_alive() for client in clients):
            started = time.monotonic()
            assert http.get("/healthz").status_code == 200
            waits.append(time.monotonic() - started)
    for client in clients:
        client.join(60)
    done.set()
    sampler.join(5)
    assert answers == [401] * 8
    growth = max(peak) - baseline
    # Eight bodies read and parsed would take hundreds of MiB (the defect: 317 -> 1524 MiB).
    assert growth < 48, f"RSS grew by {growth:.0f} MiB"
    assert max(waits) < 1.0, f"/healthz waited {max(waits):.2f} s"


def test_authenticated_bodies_still_meet_the_limit(api: RunningApi) -> None:
    over = api.settings.max_request_bytes + 1
    with _connect(api) as sock:
        sock.sendall(_head("/v1/jobs", over, api.keys["submit"]))
        assert _Reader(sock).answer()[0] == 413
    with _connect(api) as sock:  # without a key, the key is what is refused
        sock.sendall(_head("/v1/jobs", over, None))
        assert _Reader(sock).answer()[0] == 401


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"]
)
def test_open_routes_stay_open(api: RunningApi, path: str) -> None:
    answer = httpx.get(api.url + path, timeout=30)
    assert answer.status_code == 200, answer.text
    assert "WWW-Authenticate" not in answer.headers


def test_the_docs_oauth_redirect_stays_open(api: RunningApi) -> None:
    assert httpx.get(api.url + "/docs/oauth2-redirect", timeout=30).status_code == 200


def test_every_v1_path_needs_a_key_even_unknown_ones(api: RunningApi) -> None:
    for method, path in [("GET", "/v1/no-such-route"), ("PUT", "/v1/jobs"), ("GET", "/v1")]:
        answer = httpx.request(method, api.url + path, timeout=30)
        assert answer.status_code == 401, (method, path, answer.text)
    # with a key, the router answers as it always did
    key = api.headers(api.keys["submit"])
    assert httpx.get(api.url + "/v1/no-such-route", headers=key, timeout=30).status_code == 404
    assert httpx.put(api.url + "/v1/jobs", headers=key, timeout=30).status_code == 405
