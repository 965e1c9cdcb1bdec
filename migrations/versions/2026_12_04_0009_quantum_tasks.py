"""The quantum tasks (Braket task ARNs) agents report for each fragment attempt.

Why: "never pay twice" (issue 16). An agent of a QPU pool created its Braket tasks with client
tokens and logged their ARNs, but told nobody: a fragment dispatched again (its agent killed,
its queue longer than the fragment timeout) created new tasks and paid again, and a cancelled
job left its tasks running. Agents now report each attempt's tasks before they wait on them; the
orchestrator keeps them here, sends them with the fragment's next dispatch so that the next
agent resumes them, asks the pool's agents to cancel them when their job ends unfinished
(``cancel_wanted_at``, ``cancel_sent_at``), and holds the attempt clocks of a pool whose every
live agent waits on tasks it reported (``reported_at``).
Revises: 0008
Create Date: 2026-12-04 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "quantum_tasks",
        sa.Column("arn", sa.String(256), nullable=False),
        sa.Column(
            "fragment_id",
            sa.String(36),
            sa.ForeignKey(
                "fragments.id",
                ondelete="CASCADE",
                name="fk_quantum_tasks_fragment_id_fragments",
            ),
            nullable=False,
        ),
        sa.Column(
            "job_id",
            sa.String(36),
            sa.ForeignKey("jobs.id", ondelete="CASCADE", name="fk_quantum_tasks_job_id_jobs"),
            nullable=False,
        ),
        sa.Column("task_index", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("client_token", sa.String(64), nullable=False),
        sa.Column("device_arn", sa.String(256), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("node_id", sa.String(200), nullable=False),
        sa.Column("reported_attempt", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancel_wanted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("arn", name="pk_quantum_tasks"),
    )
    op.create_index("ix_quantum_tasks_fragment", "quantum_tasks", ["fragment_id", "task_index"])
    op.create_index("ix_quantum_tasks_job", "quantum_tasks", ["job_id"])
    op.create_index("ix_quantum_tasks_reported", "quantum_tasks", ["reported_at"])
    op.create_index(
        "ix_quantum_tasks_cancel_wanted",
        "quantum_tasks",
        ["cancel_wanted_at"],
        postgresql_where=sa.text("cancel_wanted_at IS NOT NULL AND cancel_sent_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_quantum_tasks_cancel_wanted", table_name="quantum_tasks")
    op.drop_index("ix_quantum_tasks_reported", table_name="quantum_tasks")
    op.drop_index("ix_quantum_tasks_job", table_name="quantum_tasks")
    op.drop_index("ix_quantum_tasks_fragment", table_name="quantum_tasks")
    op.drop_table("quantum_tasks")
