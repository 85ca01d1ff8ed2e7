"""leak detection: baselines, sensors, readings, detector state, events

Revision ID: leak_0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "leak_0001"
down_revision = None
branch_labels = ("leak",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leak_baselines",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("group_name", sa.String(200), nullable=True),
        sa.Column("values_json", sa.Text(), nullable=False),
        sa.Column("source_sensor", sa.String(200), nullable=True),
        sa.Column("augmented", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "leak_sensors",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("group_name", sa.String(200), nullable=False, server_default="default"),
        sa.Column("unit", sa.String(50), nullable=True),
        sa.Column(
            "baseline_id",
            sa.Integer(),
            sa.ForeignKey("leak_baselines.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("watermark", sa.DateTime(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False, server_default="new"),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_index("ix_leak_sensors_group_name", "leak_sensors", ["group_name"])
    op.create_table(
        "leak_readings",
        sa.Column(
            "sensor_id",
            sa.Integer(),
            sa.ForeignKey("leak_sensors.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("ts", sa.DateTime(), primary_key=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
    )
    op.create_table(
        "leak_detector_state",
        sa.Column(
            "sensor_id",
            sa.Integer(),
            sa.ForeignKey("leak_sensors.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "leak_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "sensor_id",
            sa.Integer(),
            sa.ForeignKey("leak_sensors.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(20), nullable=False, server_default="anomaly"),
        sa.Column("start", sa.DateTime(), nullable=False),
        sa.Column("end", sa.DateTime(), nullable=True),
        sa.Column("peak_score", sa.Float(), nullable=False, server_default="0"),
        sa.Column("peak_ts", sa.DateTime(), nullable=True),
        sa.Column("status", sa.String(10), nullable=False, server_default="open"),
        sa.Column("below_count", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index("ix_leak_events_sensor_status", "leak_events", ["sensor_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_leak_events_sensor_status", table_name="leak_events")
    op.drop_table("leak_events")
    op.drop_table("leak_detector_state")
    op.drop_table("leak_readings")
    op.drop_index("ix_leak_sensors_group_name", table_name="leak_sensors")
    op.drop_table("leak_sensors")
    op.drop_table("leak_baselines")
