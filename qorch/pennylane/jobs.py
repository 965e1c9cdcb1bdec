"""The device's one use of the SDK: submit circuits jobs, wait for them, read their results.

Everything the PennyLane device asks of the platform goes through :class:`JobRunner`, which uses
``QorchClient``'s ``submit``, ``job``, ``result`` and ``cancel`` only, so the client behind it can
change in this one place.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from pennylane.exceptions import DeviceError

from qorch.client import QorchClient

logger = logging.getLogger(__name__)

#: Where a job stops.
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})

#: HTTP statuses a submission waits out and tries again: the tenant's rate or unfinished jobs
#: (429), every parser busy or a dependency down (503).
RETRY_STATUSES = frozenset({429, 503})

#: Pauses between two looks at a running job, seconds: the first, doubling up to a tenth of the
#: time waited so far, but at least SHORT_POLL_S (a job of a few circuits takes about 0.2 s on a
#: local stack) and at most LONGEST_POLL_S (a long job is looked at about once a second).
FIRST_POLL_S = 0.005
SHORT_POLL_S = 0.05
LONGEST_POLL_S = 1.0


@dataclass(frozen=True)
class Endpoint:
    """Where the API is and the key to show it."""

    url: str
    api_key: str

    @classmethod
    def resolve(
        cls,
        url: str | None = None,
        api_key: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Endpoint:
        """Arguments first, then the variables the ``qorch`` command reads: ``QORCH_API_URL``
        (else ``http://QORCH_API_HOST:QORCH_API_PORT``, by default ``http://127.0.0.1:8000``) and
        ``QORCH_API_KEY``."""
        env = os.environ if env is None else env
        if url is None:
            host = env.get("QORCH_API_HOST") or "127.0.0.1"
            port = env.get("QORCH_API_PORT") or "8000"
            url = env.get("QORCH_API_URL") or f"http://{host}:{port}"
        if api_key is None:
            api_key = env.get("QORCH_API_KEY", "")
        return cls(url=url.rstrip("/"), api_key=api_key)


class JobRunner:
    """Runs circuits jobs to their end on one API. ``request_timeout`` bounds each HTTP call."""

    def __init__(
        self,
        endpoint: Endpoint,
        request_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        pause: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint = endpoint
        self._request_timeout = request_timeout
        self._clock = clock
        self._pause = pause

    @contextmanager
    def _client(self) -> Iterator[QorchClient]:
        """A client of the API, for one run (gRPC is not used: jobs are polled over REST)."""
        try:
            with QorchClient(
                self.endpoint.url,
                "",
                timeout=self._request_timeout,
                api_key=self.endpoint.api_key,
            ) as client:
                yield client
        except httpx.TransportError as exc:
            raise DeviceError(
                f"cannot reach the qorchestra API at {self.endpoint.url}: {exc} (is it running? "
                "set QORCH_API_URL or the device's url)"
            ) from exc

    def run(self, specs: Sequence[Mapping[str, Any]], timeout: float | None) -> list[Any]:
        """Submit every job, wait until all have ended (at most ``timeout`` seconds in all;
        None: no limit) and return each one's ``result``. A job that fails or is cancelled
        raises :class:`DeviceError` with its error; on a timeout, or any error, jobs still
        running are cancelled."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._client() as client:
            ids: list[str] = []
            try:
                for spec in specs:
                    ids.append(self._submit(client, spec, deadline))
                for job_id in ids:
                    self._wait(client, job_id, deadline, timeout)
                return [client.result(job_id)["result"] for job_id in ids]
            except BaseException:
                self._cancel(client, ids)
                raise

    def _submit(self, client: QorchClient, spec: Mapping[str, Any], deadline: float | None) -> str:
        """The new job's id; a 429 or 503 is waited out (as the API asks, until the deadline)."""
        pause = 0.05
        while True:
            try:
                job: dict[str, Any] = client.submit(dict(spec))
            except Exception as exc:
                status = getattr(exc, "status", None)
                if status not in RETRY_STATUSES:
                    if status is None:
                        raise
                    raise DeviceError(f"the qorchestra API refused the job: {exc}") from exc
                wait = getattr(exc, "retry_after", None) or pause
                if deadline is not None and self._clock() + wait > deadline:
                    raise DeviceError(
                        f"the qorchestra API did not take the job in time: {exc}"
                    ) from exc
                logger.info("job refused for now (%s); trying again in %.2fs", exc, wait)
                self._pause(wait)
                pause = min(pause * 2, 2.0)
                continue
            for warning in job.get("warnings") or []:
                logger.warning("job %s: %s", job["id"], warning)
            return str(job["id"])

    def _wait(
        self, client: QorchClient, job_id: str, deadline: float | None, timeout: float | None
    ) -> None:
        """Look at the job until it ends (pauses as FIRST_POLL_S ... LONGEST_POLL_S say)."""
        pause = FIRST_POLL_S
        started = self._clock()
        while True:
            job = client.job(job_id)
            status = job["status"]
            if status == "SUCCEEDED":
                return
            if status in TERMINAL:
                raise DeviceError(f"qorchestra job {job_id} {status}: {job.get('error') or ''}")
            if deadline is not None and self._clock() >= deadline:
                why = f" ({job['waiting']})" if job.get("waiting") else ""
                raise DeviceError(
                    f"qorchestra job {job_id} did not finish within {timeout}s: {status}{why}; "
                    "it is cancelled"
                )
            wait = pause if deadline is None else min(pause, max(deadline - self._clock(), 0.0))
            self._pause(wait)
            longest = min(max((self._clock() - started) / 10, SHORT_POLL_S), LONGEST_POLL_S)
            pause = min(pause * 2, longest)

    def _cancel(self, client: QorchClient, ids: Sequence[str]) -> None:
        """Cancel the jobs that have not ended (best effort: the run is failing anyway)."""
        for job_id in ids:
            try:
                if client.job(job_id)["status"] not in TERMINAL:
                    client.cancel(job_id)
            except Exception as exc:  # the caller's error is the one to report
                logger.warning("could not cancel job %s: %s", job_id, exc)
