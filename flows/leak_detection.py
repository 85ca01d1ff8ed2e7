"""Scheduled sensor anomaly and leak detection (every 10 minutes), and baseline augmentation."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from prefect import flow
from pydantic import BaseModel, Field

from tasks.timeseries import (
    DetectParams,
    augment_sensor_baselines,
    detect_sensor_group,
    list_sensor_groups,
    prepare_leak_database,
    publish_leak_report,
)


class LeakDetectionParams(BaseModel):
    """Parameters of one scheduled leak-detection run."""

    groups: list[str] | None = Field(
        default=None, description="Sensor groups to process (default: all)."
    )
    open_threshold: float = Field(default=0.5, ge=0, le=1, description="Score that opens an event.")
    close_threshold: float = Field(
        default=0.2, ge=0, le=1, description="Score below which an event may close."
    )
    close_after: int = Field(
        default=12, ge=1, description="Consecutive low points that close an event."
    )
    offline_after_minutes: float = Field(
        default=30.0, gt=0, description="Silence after which a sensor is offline."
    )
    now: datetime | None = Field(
        default=None,
        description="Reference time for offline checks (replay/tests); default now (UTC).",
    )
    detector: Literal["matrix-profile", "night-flow"] = Field(
        default="matrix-profile",
        description="matrix-profile (any sensor) or night-flow (CUSUM on water night flows).",
    )
    plots: bool = Field(default=True, description="Publish a PNG per alerting sensor.")


@flow(name="leak-detection")
def leak_detection(params: LeakDetectionParams | None = None) -> dict[str, Any]:
    """Score new readings per sensor group, open/close events, publish a report."""
    params = params or LeakDetectionParams()
    prepare_leak_database()
    groups = list_sensor_groups(params.groups)
    detect = DetectParams(
        open_threshold=params.open_threshold,
        close_threshold=params.close_threshold,
        close_after=params.close_after,
        offline_after_minutes=params.offline_after_minutes,
        detector=params.detector,
    ).__dict__
    futures = [detect_sensor_group.submit(g, detect, params.now) for g in groups]
    results = [r for f in futures for r in f.result()]
    report = publish_leak_report(results, params.groups, params.plots)
    return {
        "groups": len(groups),
        "sensors": len(results),
        "new_points": sum(r["new_points"] for r in results),
        "opened": sum(r["opened"] for r in results),
        "closed": sum(r["closed"] for r in results),
        "open_events": report["open_events"],
        "offline": report["offline"],
        "errors": [{"sensor": r["sensor"], "error": r["error"]} for r in results if r["error"]],
        "plots": report["plots"],
    }


@flow(name="leak-baseline-augment")
def leak_baseline_augment(max_score: float = 0.3) -> dict[str, int]:
    """Append recent data judged normal to the baselines in use (its own, slower schedule)."""
    prepare_leak_database()
    return augment_sensor_baselines(max_score)


if __name__ == "__main__":
    print(leak_detection())
