"""Calculation records of the container-jobs capability.

Revision ID: calculations_0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "calculations_0001"
down_revision = None
branch_labels = ("calculations",)
depends_on = None


def upgrade() -> None:
    """Create the calculations table."""
    op.create_table(
        "calculations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("flow_run_id", sa.String(64), nullable=False),
        sa.Column("step", sa.String(120), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("tool_version", sa.String(32), nullable=False),
        sa.Column("image", sa.String(255), nullable=False),
        sa.Column("image_id", sa.String(128)),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("exit_code", sa.Integer),
        sa.Column("message", sa.Text),
        sa.Column("started", sa.DateTime(timezone=True)),
        sa.Column("finished", sa.DateTime(timezone=True)),
        sa.Column("log_key", sa.String(1024)),
        sa.Column("cache_key", sa.String(64)),
        sa.Column("reused_from", sa.String(36)),
    )
    op.create_index("ix_calculations_flow_run_id", "calculations", ["flow_run_id"])
    op.create_index("ix_calculations_tool", "calculations", ["tool"])
    op.create_index("ix_calculations_status", "calculations", ["status"])
    op.create_index("ix_calculations_cache_key", "calculations", ["cache_key"])


def downgrade() -> None:
    """Drop the calculations table."""
    op.drop_table("calculations")
