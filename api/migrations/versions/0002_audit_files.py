"""reference files of audits; longer stored input names

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_files",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["audit_jobs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_files_job_id"), ["job_id"], unique=False)
    with op.batch_alter_table("audit_jobs", schema=None) as batch_op:
        batch_op.alter_column("input_name", existing_type=sa.String(length=32), type_=sa.String(length=255))


def downgrade() -> None:
    with op.batch_alter_table("audit_jobs", schema=None) as batch_op:
        batch_op.alter_column("input_name", existing_type=sa.String(length=255), type_=sa.String(length=32))
    with op.batch_alter_table("audit_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_files_job_id"))
    op.drop_table("audit_files")
