"""Jobs driven as the orchestrator drives them, for watch tests: store an event, then publish it."""

from __future__ import annotations

from datetime import UTC, datetime

from qorch.samples import demo_job
from qorchestra.config import Settings
from qorchestra.jobs.circuits import CircuitsJob
from qorchestra.kafka import Producer
from qorchestra.lifecycle import JobStatus
from qorchestra.store import repository as repo
from qorchestra.store.credentials import load_control_plane_signer
from qorchestra.store.db import SessionFactory, session_scope
from qorchestra.store.events import publish_events
from tests.support.stored_jobs import store_circuits_job


class OrchestratedJobs:
    """Stores each event of a job and publishes it on the ``events`` topic, in that order."""

    def __init__(self, factory: SessionFactory, producer: Producer, settings: Settings) -> None:
        self._factory, self._producer, self._settings = factory, producer, settings
        self._signer = load_control_plane_signer(factory)

    def running(self, name: str = "watched") -> str:
        """A new RUNNING circuits job (of the default tenant): events 1 (submitted) and 2."""
        spec = CircuitsJob.model_validate(demo_job(2))
        job_id = store_circuits_job(self._factory, spec, name)
        self.status(job_id, JobStatus.RUNNING)
        return job_id

    def status(self, job_id: str, status: JobStatus) -> None:
        """Move the job to ``status``, with its event."""
        with session_scope(self._factory) as session:
            job = repo.lock_job(session, job_id)
            row = repo.set_status(session, job, status, now=datetime.now(UTC))
        publish_events(self._producer, self._settings, self._signer, [row])

    def progress(self, job_id: str) -> None:
        """One progress event of the job."""
        with session_scope(self._factory) as session:
            row = repo.append_event(session, repo.lock_job(session, job_id), "progress")
        publish_events(self._producer, self._settings, self._signer, [row])
