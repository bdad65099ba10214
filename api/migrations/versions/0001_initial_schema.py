"""initial schema

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=False), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_prefix"), ["prefix"], unique=False)
        batch_op.create_index(batch_op.f("ix_api_keys_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "audit_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("input_name", sa.String(length=32), nullable=False),
        sa.Column("input_data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=False), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=False), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=False), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("rows_done", sa.Integer(), nullable=False),
        sa.Column("rows_expected", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("report_json", sa.Text(), nullable=True),
        sa.Column("report_html", sa.Text(), nullable=True),
        sa.Column("report_md", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_jobs_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_jobs_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "vendor_estimates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("vendor", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("n_scored", sa.Integer(), nullable=False),
        sa.Column("n_flagged", sa.Integer(), nullable=False),
        sa.Column("flag_rate", sa.Float(), nullable=False),
        sa.Column("prevalence", sa.Float(), nullable=False),
        sa.Column("ci_low", sa.Float(), nullable=False),
        sa.Column("ci_high", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["audit_jobs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("vendor_estimates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vendor_estimates_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_vendor_estimates_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_vendor_estimates_vendor"), ["vendor"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("vendor_estimates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vendor_estimates_vendor"))
        batch_op.drop_index(batch_op.f("ix_vendor_estimates_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_vendor_estimates_job_id"))

    op.drop_table("vendor_estimates")
    with op.batch_alter_table("audit_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_jobs_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_audit_jobs_status"))

    op.drop_table("audit_jobs")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_api_keys_prefix"))

    op.drop_table("api_keys")
    op.drop_table("tenants")
