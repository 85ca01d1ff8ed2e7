"""Calculation records of the container-jobs capability: one row per tool run in a container."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from headwater.db import Base


class Calculation(Base):
    """One run of a tool on its inputs: what ran, on what, how it ended and where outputs went."""

    __tablename__ = "calculations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    flow_run_id: Mapped[str] = mapped_column(String(64), index=True)
    step: Mapped[str] = mapped_column(String(120))
    label: Mapped[str] = mapped_column(String(200))
    tool: Mapped[str] = mapped_column(String(64), index=True)
    tool_version: Mapped[str] = mapped_column(String(32))
    image: Mapped[str] = mapped_column(String(255))
    image_id: Mapped[str | None] = mapped_column(String(128))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outputs: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), index=True)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(Text)
    started: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    log_key: Mapped[str | None] = mapped_column(String(1024))
    cache_key: Mapped[str | None] = mapped_column(String(64), index=True)
    reused_from: Mapped[str | None] = mapped_column(String(36))

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready values (what `--json` prints)."""
        return {
            "id": self.id,
            "flow_run_id": self.flow_run_id,
            "step": self.step,
            "label": self.label,
            "tool": self.tool,
            "tool_version": self.tool_version,
            "image": self.image,
            "image_id": self.image_id,
            "parameters": self.parameters,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "status": self.status,
            "exit_code": self.exit_code,
            "message": self.message,
            "started": self.started.isoformat() if self.started else None,
            "finished": self.finished.isoformat() if self.finished else None,
            "log_key": self.log_key,
            "cache_key": self.cache_key,
            "reused_from": self.reused_from,
        }
