"""SQLAlchemy models of the leak-detection capability (tables prefixed `leak_`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from headwater.db import Base


class LeakBaseline(Base):
    """A segment of normal behaviour in the baseline library."""

    __tablename__ = "leak_baselines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    group: Mapped[str | None] = mapped_column("group_name", String(200), nullable=True)
    values_json: Mapped[str] = mapped_column(Text)  # JSON list of floats
    source_sensor: Mapped[str | None] = mapped_column(String(200), nullable=True)
    augmented: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class LeakSensor(Base):
    """A sensor: its group, unit, baseline, watermark and liveness."""

    __tablename__ = "leak_sensors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    group: Mapped[str] = mapped_column("group_name", String(200), default="default", index=True)
    unit: Mapped[str | None] = mapped_column(String(50), nullable=True)
    baseline_id: Mapped[int | None] = mapped_column(
        ForeignKey("leak_baselines.id", ondelete="SET NULL"), nullable=True
    )
    watermark: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="new")  # new|online|offline|error
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class LeakReading(Base):
    """One reading; the per-point score is filled in by the scheduled flow."""

    __tablename__ = "leak_readings"

    sensor_id: Mapped[int] = mapped_column(
        ForeignKey("leak_sensors.id", ondelete="CASCADE"), primary_key=True
    )
    ts: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)


class LeakDetectorState(Base):
    """Serialised detector state of a sensor (so a run only pays for its new points)."""

    __tablename__ = "leak_detector_state"

    sensor_id: Mapped[int] = mapped_column(
        ForeignKey("leak_sensors.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[bytes] = mapped_column(LargeBinary)
    points: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class LeakEvent(Base):
    """An anomaly event: opened when the score crosses the threshold, closed with hysteresis."""

    __tablename__ = "leak_events"
    __table_args__ = (Index("ix_leak_events_sensor_status", "sensor_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sensor_id: Mapped[int] = mapped_column(ForeignKey("leak_sensors.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20), default="anomaly")  # anomaly|offline
    start: Mapped[datetime] = mapped_column(DateTime)
    end: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    peak_score: Mapped[float] = mapped_column(Float, default=0.0)
    peak_ts: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(10), default="open")  # open|closed
    below_count: Mapped[int] = mapped_column(Integer, default=0)
