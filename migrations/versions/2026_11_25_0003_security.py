"""Security: API keys, tenants with quotas and budgets, and the tenant of jobs and datasets.

Why: every /v1 call is made with an API key that belongs to a tenant; a tenant sees only its
own jobs and datasets, and its quotas and AWS budget protect the service and its bill. Keys
are stored only as hashes. Rows from before keys existed belong to the tenant ``default``.
Revises: 0002
Create Date: 2026-11-25 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONB = postgresql.JSONB(astext_type=sa.Text())


def upgrade() -> None:
    op.add_column(
        "jobs",
        sa.Column("tenant", sa.String(length=64), server_default="default", nullable=False),
    )
    op.add_column("jobs", sa.Column("cost_usd", sa.Float(), server_default="0", nullable=False))
    op.create_index(op.f("ix_jobs_tenant"), "jobs", ["tenant"], unique=False)
    op.add_column(
        "datasets",
        sa.Column("tenant", sa.String(length=64), server_default="default", nullable=False),
    )
    op.create_index(op.f("ix_datasets_tenant"), "datasets", ["tenant"], unique=False)
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("scopes", JSONB, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_tenant"), "api_keys", ["tenant"], unique=False)
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("max_concurrent_jobs", sa.Integer(), nullable=True),
        sa.Column("max_circuits_per_job", sa.Integer(), nullable=True),
        sa.Column("max_shots_per_job", sa.BigInteger(), nullable=True),
        sa.Column("submit_rate_per_s", sa.Float(), nullable=True),
        sa.Column("budget_usd", sa.Float(), nullable=True),
        sa.Column("spent_usd", sa.Float(), server_default="0", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
    )


def downgrade() -> None:
    op.drop_table("tenants")
    op.drop_index(op.f("ix_api_keys_tenant"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_index(op.f("ix_datasets_tenant"), table_name="datasets")
    op.drop_column("datasets", "tenant")
    op.drop_index(op.f("ix_jobs_tenant"), table_name="jobs")
    op.drop_column("jobs", "cost_usd")
    op.drop_column("jobs", "tenant")
