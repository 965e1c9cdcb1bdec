"""Jobs keep the submission's Idempotency-Key, unique per tenant.

Why: a client that sends a submission again (its answer was lost to a timeout or a dropped
connection) made a second job, and ran and paid for the work twice (issue 17). The SDK now sends
an ``Idempotency-Key`` with every submission and the same key on its retries; the API answers a
repeat with the job the first one stored. The unique index settles two submissions with one key
that arrive at once: only one job is stored. ``request_digest`` (sha256 of the body) tells a
repeat from a different request that reuses the key (422).
Revises: 0007
Create Date: 2026-12-04 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("idempotency_key", sa.String(255), nullable=True))
    op.add_column("jobs", sa.Column("request_digest", sa.String(64), nullable=True))
    op.create_index(
        "uq_jobs_tenant_idempotency_key",
        "jobs",
        ["tenant", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_jobs_tenant_idempotency_key", table_name="jobs")
    op.drop_column("jobs", "request_digest")
    op.drop_column("jobs", "idempotency_key")
