"""API keys say whether they are the configured admin key (``api_keys.configured``).

Why: the API registers ``QORCH_ADMIN_KEY`` at every start, and every ``qorch up`` without one
makes a new key, so admin keys piled up in a persistent database and stayed valid. A start
now revokes the configured admin key of the previous start when its own key is new, and
``qorch keys rotate-admin`` replaces it; admin keys made through ``POST /v1/keys`` are left
alone. The column tells the two apart. Existing keys the API registered (named
``QORCH_ADMIN_KEY``, of the tenant ``admin``) are marked configured; none is revoked here:
the next start keeps its own key and revokes the others.
Revises: 0004
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "api_keys",
        sa.Column("configured", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.execute(
        "UPDATE api_keys SET configured = true WHERE name = 'QORCH_ADMIN_KEY' AND tenant = 'admin'"
    )


def downgrade() -> None:
    op.drop_column("api_keys", "configured")
