"""Training: checkpoints, metrics history, uploaded datasets, and per-step fragments.

Why: training and minimisation jobs run step after step; each step's state is checkpointed so
a restarted orchestrator resumes exactly, its metrics are kept for the history and the plots,
and its fragments carry their own payload (samples and weights of that step).
Revises: 0001
Create Date: 2026-11-25 11:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONB = postgresql.JSONB(astext_type=sa.Text())


def upgrade() -> None:
    op.add_column("fragments", sa.Column("step", sa.Integer(), server_default="0", nullable=False))
    op.add_column("fragments", sa.Column("payload", sa.LargeBinary(), nullable=True))
    op.create_table(
        "training_checkpoints",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("state", JSONB, nullable=False),
        sa.Column("request", JSONB, nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_training_checkpoints_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_training_checkpoints")),
    )
    op.create_table(
        "job_metrics",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("values", JSONB, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_metrics_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_metrics")),
    )
    op.create_index(op.f("ix_job_metrics_job_id"), "job_metrics", ["job_id"], unique=False)
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("feature_names", JSONB, nullable=False),
        sa.Column("classes", JSONB, nullable=False),
        sa.Column("features", JSONB, nullable=False),
        sa.Column("labels", JSONB, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
    )


def downgrade() -> None:
    op.drop_table("datasets")
    op.drop_index(op.f("ix_job_metrics_job_id"), table_name="job_metrics")
    op.drop_table("job_metrics")
    op.drop_table("training_checkpoints")
    op.drop_column("fragments", "payload")
    op.drop_column("fragments", "step")
