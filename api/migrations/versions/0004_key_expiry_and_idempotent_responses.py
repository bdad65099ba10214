"""API keys that expire; the answer an idempotent request gave, to repeat it

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=False), nullable=True))
    op.add_column("idempotency_keys", sa.Column("response", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("response")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("expires_at")
