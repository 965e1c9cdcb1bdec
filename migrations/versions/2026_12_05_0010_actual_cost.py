"""Each job's actual cost: what its quantum tasks used, as agents report it with each result.

Why: "Cost, reconciled" (issue 16). A job on a paid pool (aws-*, emu-*) was charged its
estimate at submission and kept it: an upper bound, so a tenant's budget ran out long before
its money did, and cancelled or failed work was paid in full. Agents now report what each
fragment used (tasks, shots, the price of the pool's table); the orchestrator adds it up here,
once per fragment, and when the job ends it gives the tenant back the estimate less the actual.
Revises: 0009
Create Date: 2026-12-05 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "jobs",
        sa.Column("actual_cost_usd", sa.Float(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("jobs", "actual_cost_usd")
