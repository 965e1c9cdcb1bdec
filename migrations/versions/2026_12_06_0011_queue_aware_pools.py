"""What each node's device said of itself, and the pools a job may run on, in order.

Why: "Queue-aware pools" (issue 16). Agents now report their device's status, queue depth and
availability windows in their heartbeats; ``nodes.device`` keeps the latest report, for
``GET /v1/pools`` and for the orchestrator, which starts a job that names several pools on the
first one that is online (``jobs.pools``: the names in order of preference, NULL for a job that
names one pool).
Revises: 0010
Create Date: 2026-12-06 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("nodes", sa.Column("device", postgresql.JSONB(), nullable=True))
    op.add_column("jobs", sa.Column("pools", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "pools")
    op.drop_column("nodes", "device")
