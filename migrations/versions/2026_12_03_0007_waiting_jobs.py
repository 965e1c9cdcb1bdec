"""Jobs say when they started waiting for a node agent, and how long they may wait.

Why: a job on a pool that no live agent served went RUNNING and failed after its attempts ran
out, with nothing telling the user why (issue 15). The orchestrator now marks such a job
waiting (``waiting_since``), keeps its fragments' attempt clocks still, and fails it only past
its optional ``max_queue_s``.
Revises: 0006
Create Date: 2026-12-03 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("max_queue_s", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "max_queue_s")
    op.drop_column("jobs", "waiting_since")
