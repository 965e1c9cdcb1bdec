"""Jobs count the fragment rows written so far (``jobs.fragments_written``).

Why: the orchestrator asks after every result and every dispatch pass whether a job still has
fragments to write (the position of its next window). Counting the job's fragment rows each
time cost a scan of all of them, and kept the results loop from knowing cheaply whether a
result frees a slot worth topping up. The count is kept in the job's row instead, by the one
function that inserts fragments; existing jobs are backfilled from their rows.
Revises: 0003
Create Date: 2026-12-01 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "jobs",
        sa.Column("fragments_written", sa.Integer(), server_default="0", nullable=False),
    )
    op.execute(
        "UPDATE jobs SET fragments_written = "
        "(SELECT count(*) FROM fragments f WHERE f.job_id = jobs.id)"
    )


def downgrade() -> None:
    op.drop_column("jobs", "fragments_written")
