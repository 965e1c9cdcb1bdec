"""Helpers of the fault tests: waiting on a job through the API, reading a service's metrics."""

from __future__ import annotations

import re
from typing import Any

import httpx

from qorch.client import QorchClient
from qorch.stack import Stack
from tests.waiting import wait_until


def job_state(client: QorchClient, job_id: str) -> dict[str, Any]:
    """The job as the API shows it."""
    return client.job(job_id)


def wait_for_status(client: QorchClient, job_id: str, timeout: float = 180) -> dict[str, Any]:
    """Wait until the job is finished; returns it."""

    def finished() -> dict[str, Any] | None:
        job = client.job(job_id)
        return job if job["status"] in ("SUCCEEDED", "FAILED", "CANCELLED") else None

    return wait_until(
        finished,
        timeout=timeout,
        interval=0.2,
        what=f"job {job_id} to finish",
    )


def wait_for_progress(
    client: QorchClient, job_id: str, fragments: int, timeout: float = 120
) -> None:
    """Wait until at least ``fragments`` fragments of the job are counted."""
    wait_until(
        lambda: client.job(job_id)["progress"]["fragments_done"] >= fragments,
        timeout=timeout,
        interval=0.05,
        what=f"{fragments} fragments of {job_id} done",
    )


def metric(stack: Stack, service: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample of a service (0 when absent)."""
    text = httpx.get(stack.metrics_url(service), timeout=5).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if wanted else "") + r" (\S+)"
    match = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0
