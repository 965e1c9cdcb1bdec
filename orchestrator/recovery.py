"""Recovery after the broker lost its state (a restart of a broker that keeps nothing, or a
topic deleted by hand): notice it, and send every unanswered fragment again from Postgres.

Noticing is pure (:class:`BrokerWatch` compares topic ids); resending is one transaction.
Fragments are sent again as the *same* attempt: the broker's loss is no fault of theirs, so it
does not use up one of their ``max_attempts``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from orchestrator.fragments import fragment_key, payload
from qorchestra.config import Settings
from qorchestra.store import repository as repo
from qorchestra.store.db import SessionFactory, session_scope

logger = logging.getLogger(__name__)

#: Most fragments sent again in one transaction (the in-flight caps keep the real number lower).
RESEND_BATCH = 10_000


class BrokerWatch:
    """Remembers the ids of the topics it saw; a changed or vanished id means a reset."""

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}

    def changed(self, ids: Mapping[str, str]) -> bool:
        """Record ``ids`` (topic -> id); True when a topic seen before now has another id."""
        reset = any(name in self._ids and self._ids[name] != ids.get(name) for name in self._ids)
        self._ids = dict(ids)
        return reset


def resend_unanswered(factory: SessionFactory, settings: Settings) -> int:
    """Put every dispatched, unanswered fragment of a running job back in the outbox.

    Returns how many were queued again; the relay publishes them and gives them new deadlines.
    """
    with session_scope(factory) as session:
        fragments = repo.unanswered_fragments(session, RESEND_BATCH)
        for fragment in fragments:
            job = repo.get_job(session, fragment.job_id)
            # the same message the dispatcher would build (same attempt)
            message = payload(session, job, fragment)
            fragment.status = repo.FragmentStatus.PENDING
            fragment.deadline_at = None
            repo.enqueue(
                session,
                topic=settings.fragments_topic(job.pool),
                key=fragment_key(fragment.id, fragment.attempt),
                payload=message.SerializeToString(),
                job_id=job.id,
                fragment_id=fragment.id,
            )
            logger.info(
                "fragment sent again after the broker lost it",
                extra={"job_id": job.id, "fragment_id": fragment.id, "attempt": fragment.attempt},
            )
        return len(fragments)
