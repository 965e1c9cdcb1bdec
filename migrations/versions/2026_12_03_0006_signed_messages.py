"""Signed messages on the bus: node credentials, the control-plane key, nodes' credential.

Why: anyone who could reach the broker could publish results, heartbeats and events, and they
counted (issue 14). Agents now sign with an enrolled Ed25519 node credential (the store keeps the
public key), the control plane signs events with a secret only it can read (made here, once),
and a node row remembers the credential that speaks for it.
Revises: 0005
Create Date: 2026-12-03 14:00:00
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "node_credentials",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("pool", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_credentials")),
    )
    op.create_index(op.f("ix_node_credentials_pool"), "node_credentials", ["pool"], unique=False)
    keys = op.create_table(
        "control_plane_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_control_plane_keys")),
    )
    op.bulk_insert(keys, [{"id": f"cp_{secrets.token_hex(4)}", "secret": secrets.token_bytes(32)}])
    op.add_column("nodes", sa.Column("credential_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    op.drop_column("nodes", "credential_id")
    op.drop_table("control_plane_keys")
    op.drop_index(op.f("ix_node_credentials_pool"), table_name="node_credentials")
    op.drop_table("node_credentials")
