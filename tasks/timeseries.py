"""Time-series tasks of the leak-detection capability: ingest, per-group detection, baselines.

The work lives in plain functions (`ingest_frame`, `detect_group`, `augment_baselines`, ...)
that take a SQLAlchemy URL; the Prefect tasks around them resolve the URL from settings and
pass only names, ids and small summaries between tasks.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from headwater.db import get_engine, upgrade
from headwater.errors import InputError
from headwater.models.leak import (
    LeakBaseline,
    LeakDetectorState,
    LeakEvent,
    LeakReading,
    LeakSensor,
)
from tasks.detector import DetectorConfig, NightFlowLeakDetector, StreamingDetector
from tasks.leak_io import clean_series
from tasks.retry import retry_on

INSERT_CHUNK = 5000
SENSOR_CHUNK = 200  # sensors per transaction in a scheduled run


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except Exception:
        return logging.getLogger("headwater.leak")


#: Connection-level database failures only.
_is_transient = retry_on(OperationalError)


def _insert(engine: Engine):  # type: ignore[no-untyped-def]
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    return insert


def _chunks(rows: list[dict], size: int = INSERT_CHUNK) -> Iterator[list[dict]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def prepare_database(url: str | None = None) -> str:
    """Apply the Alembic migrations (idempotent) and return the URL used."""
    from headwater.settings import get_settings

    url = url or get_settings().sqlalchemy_url()
    upgrade(url)
    return url


# -- ingest ------------------------------------------------------------------------------------
def ensure_sensors(
    url: str, names: list[str], group: str, unit: str | None = None
) -> dict[str, int]:
    """Create missing sensors (idempotent) and return name -> id."""
    engine = get_engine(url)
    insert = _insert(engine)
    with engine.begin() as conn:
        if names:
            stmt = insert(LeakSensor.__table__).values(
                [{"name": n, "group_name": group, "unit": unit, "status": "new"} for n in names]
            )
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
        rows = conn.execute(
            select(LeakSensor.id, LeakSensor.name).where(LeakSensor.name.in_(names))
        ).all()
    return {name: sid for sid, name in rows}


def ingest_frame(
    url: str, frame: pd.DataFrame, group: str = "default", unit: str | None = None
) -> dict[str, int]:
    """Upsert long readings (`sensor, ts, value`) keyed by (sensor, ts); return counts."""
    df = frame.dropna(subset=["ts"]).copy()
    skipped = len(frame) - len(df)
    df["ts"] = (
        pd.to_datetime(df["ts"]).dt.tz_localize(None)
        if getattr(df["ts"].dt, "tz", None)
        else pd.to_datetime(df["ts"])
    )
    # duplicate (sensor, ts) in one batch: keep the last value, as the upsert would
    dups = int(df.duplicated(["sensor", "ts"], keep="last").sum())
    df = df.drop_duplicates(["sensor", "ts"], keep="last")
    ids = ensure_sensors(url, sorted(df["sensor"].astype(str).unique()), group, unit)
    df["sensor_id"] = df["sensor"].astype(str).map(ids)
    values = df["value"].astype(float)
    rows = [
        {"sensor_id": int(s), "ts": t.to_pydatetime(), "value": (None if np.isnan(v) else float(v))}
        for s, t, v in zip(df["sensor_id"], df["ts"], values, strict=True)
    ]
    engine = get_engine(url)
    insert = _insert(engine)
    with engine.begin() as conn:
        for chunk in _chunks(rows):
            stmt = insert(LeakReading.__table__).values(chunk)
            stmt = stmt.on_conflict_do_update(
                index_elements=["sensor_id", "ts"], set_={"value": stmt.excluded.value}
            )
            conn.execute(stmt)
    return {"sensors": len(ids), "readings": len(rows), "duplicates": dups, "skipped": skipped}


def replay_frame(
    url: str,
    frame: pd.DataFrame,
    group: str = "default",
    speed: float = 0.0,
    tick: timedelta = timedelta(minutes=10),
    max_ticks: int | None = None,
    on_tick: Any = None,
) -> dict[str, int]:
    """Feed historical readings tick by tick as if arriving live (sleep tick/speed between ticks).

    `on_tick(now)` (e.g. one scheduled detection run) is called after each tick is ingested.
    """
    df = frame.dropna(subset=["ts"]).sort_values("ts")
    if df.empty:
        raise InputError("replay input has no readings with a valid timestamp")
    start = df["ts"].iloc[0].floor("min")
    bins = ((df["ts"] - start) // tick).astype(int)
    ticks = readings = 0
    for _b, part in df.groupby(bins, sort=True):
        if max_ticks is not None and ticks >= max_ticks:
            break
        readings += ingest_frame(url, part, group)["readings"]
        ticks += 1
        if on_tick is not None:
            on_tick(part["ts"].max().to_pydatetime())
        if speed > 0:
            time.sleep(tick.total_seconds() / speed)
    return {"ticks": ticks, "readings": readings}


# -- baselines ---------------------------------------------------------------------------------
def znorm(x: np.ndarray) -> np.ndarray:
    """Z-normalise (a constant segment becomes zeros instead of dividing by zero)."""
    x = np.asarray(x, dtype=float)
    sd = x.std()
    return (x - x.mean()) / sd if sd > 1e-12 else np.zeros_like(x)


def best_baseline(window: np.ndarray, library: dict[int, np.ndarray]) -> tuple[int | None, float]:
    """Library baseline whose best-aligned subsequence is nearest (z-normalised) to `window`."""
    window = np.asarray(window, dtype=float)
    window = window[np.isfinite(window)]
    m = len(window)
    best_id, best_d = None, float("inf")
    if m < 4:
        return None, best_d
    q = znorm(window)
    scale = float(np.std(window)) or 1.0
    for bid, seg in library.items():
        seg = np.asarray(seg, dtype=float)
        if len(seg) < m:
            continue
        subs = np.lib.stride_tricks.sliding_window_view(seg, m)
        zs = np.array([znorm(s) for s in subs[:: max(1, len(subs) // 2000)]])
        shape_d = np.sqrt(((zs - q) ** 2).sum(axis=1)).min() / np.sqrt(m)
        level_d = abs(float(np.mean(seg)) - float(np.mean(window))) / (scale + float(np.std(seg)))
        d = float(shape_d + 0.5 * min(level_d, 2.0))
        if d < best_d:
            best_id, best_d = bid, d
    return best_id, best_d


def save_baseline(
    url: str, name: str, values: np.ndarray, group: str | None = None, source: str | None = None
) -> int:
    """Add or replace a baseline segment in the library; return its id."""
    engine = get_engine(url)
    with Session(engine) as s, s.begin():
        row = s.scalar(select(LeakBaseline).where(LeakBaseline.name == name))
        if row is None:
            row = LeakBaseline(
                name=name, group=group, values_json="[]", source_sensor=source, augmented=0
            )
            s.add(row)
        row.values_json = json.dumps([float(v) for v in np.asarray(values, dtype=float)])
        row.updated_at = datetime.utcnow()
        s.flush()
        return int(row.id)


def load_library(session: Session, group: str | None = None) -> dict[int, np.ndarray]:
    """Baselines (optionally of one group plus the group-less ones) as id -> values."""
    q = select(LeakBaseline.id, LeakBaseline.values_json)
    if group is not None:
        q = q.where((LeakBaseline.group == group) | (LeakBaseline.group.is_(None)))
    return {bid: np.asarray(json.loads(v), dtype=float) for bid, v in session.execute(q).all()}


def augment_baselines(
    url: str, max_len: int = 4000, min_points: int = 100, max_score: float = 0.3
) -> dict[str, int]:
    """Append recent normal readings (score < `max_score`, no open event) to each baseline."""
    engine = get_engine(url)
    augmented = 0
    with Session(engine) as s, s.begin():
        sensors = s.scalars(select(LeakSensor).where(LeakSensor.baseline_id.is_not(None))).all()
        for sensor in sensors:
            if s.scalar(
                select(func.count())
                .select_from(LeakEvent)
                .where(LeakEvent.sensor_id == sensor.id, LeakEvent.status == "open")
            ):
                continue
            base = s.get(LeakBaseline, sensor.baseline_id)
            if base is None:
                continue
            since = base.updated_at or datetime.min
            rows = s.execute(
                select(LeakReading.value, LeakReading.score)
                .where(
                    LeakReading.sensor_id == sensor.id,
                    LeakReading.ts > since,
                    LeakReading.score.is_not(None),
                )
                .order_by(LeakReading.ts)
            ).all()
            vals = np.array(
                [v for v, sc in rows if v is not None and sc is not None and sc < max_score]
            )
            if len(vals) < min_points:
                continue
            merged = np.concatenate([np.asarray(json.loads(base.values_json)), vals])[-max_len:]
            base.values_json = json.dumps(merged.tolist())
            base.augmented += 1
            base.updated_at = datetime.utcnow()
            augmented += 1
    return {"baselines_augmented": augmented}


# -- detection ---------------------------------------------------------------------------------
@dataclass
class DetectParams:
    """Thresholds of the scheduled detection (plain: used by the flow's parameter model)."""

    open_threshold: float = 0.5
    close_threshold: float = 0.2
    close_after: int = 12  # consecutive points below close_threshold that close an event
    offline_after_minutes: float = 30.0
    baseline_window: int = 64  # points of a new sensor matched against the library
    min_points: int = 1
    detector: str = "matrix-profile"  # or "night-flow" (water-network flow meters)


@dataclass
class SensorResult:
    """What one sensor's detection step did (small, JSON-able)."""

    sensor: str
    status: str = "online"
    new_points: int = 0
    max_score: float = 0.0
    opened: int = 0
    closed: int = 0
    late: int = 0
    baseline: int | None = None
    issues: list[str] = field(default_factory=list)
    error: str | None = None


def _detector_config(params: DetectParams) -> DetectorConfig:
    # sensors are open-ended streams: the probation is a fixed number of points
    return DetectorConfig(probation=200, min_history=150)


def _load_detector(
    s: Session, sensor: LeakSensor, params: DetectParams, first: np.ndarray, res: SensorResult
) -> StreamingDetector:
    state = s.get(LeakDetectorState, sensor.id)
    if state is not None:
        return StreamingDetector.from_bytes(state.state)
    det = StreamingDetector(_detector_config(params))
    library = load_library(s, sensor.group)
    if library and len(first) >= 4:
        bid, _d = best_baseline(first[: params.baseline_window], library)
        if bid is not None:
            sensor.baseline_id = bid
            res.baseline = bid
            # prime the history with the baseline so that scoring starts without a long probation
            primed = library[bid][-det.config.history :]
            det.update(primed)
            det.state.recent = np.zeros(0)  # priming alarms must not suppress real ones
    return det


def _process_sensor(
    s: Session, sensor: LeakSensor, params: DetectParams, now: datetime
) -> SensorResult:
    res = SensorResult(sensor=sensor.name)
    wm = sensor.watermark
    q = select(LeakReading.ts, LeakReading.value).where(LeakReading.sensor_id == sensor.id)
    if wm is not None:
        q = q.where(LeakReading.ts > wm)
        res.late = int(
            s.scalar(
                select(func.count())
                .select_from(LeakReading)
                .where(
                    LeakReading.sensor_id == sensor.id,
                    LeakReading.ts <= wm,
                    LeakReading.score.is_(None),
                )
            )
            or 0
        )
        if res.late:
            res.issues.append(
                f"{res.late} readings arrived after their time was processed (not scored)"
            )
    rows = s.execute(q.order_by(LeakReading.ts)).all()
    last_ts = wm
    if rows:
        ts, values, rep = clean_series(
            [r[0] for r in rows], [np.nan if r[1] is None else r[1] for r in rows]
        )
        if rep.nan:
            res.issues.append(f"{rep.nan} NaN values (carried forward)")
        if rep.gaps:
            res.issues.append(f"{rep.gaps} gaps in sampling")
        if params.detector == "night-flow":
            prev = s.get(LeakDetectorState, sensor.id)
            nf = NightFlowLeakDetector.from_bytes(prev.state) if prev else NightFlowLeakDetector()
            scores = nf.update(ts, values)
            blob, seen = nf.to_bytes(), (prev.points if prev else 0) + len(values)
        else:
            det = _load_detector(s, sensor, params, values[np.isfinite(values)], res)
            scores = det.update(values)
            blob, seen = det.to_bytes(), det.state.seen
            if det.state.seen < det.config.probation:
                res.issues.append(
                    f"too little history ({det.state.seen} points): scores are 0 during probation"
                )
        res.new_points = len(values)
        res.max_score = float(scores.max()) if len(scores) else 0.0
        s.connection().execute(
            update(LeakReading.__table__)  # type: ignore[arg-type]
            .where(LeakReading.__table__.c.sensor_id == sensor.id)
            .where(LeakReading.__table__.c.ts == _bind("b_ts"))
            .values(score=_bind("b_score")),
            [
                {"b_ts": pd.Timestamp(t).to_pydatetime(), "b_score": float(sc)}
                for t, sc in zip(ts, scores, strict=True)
            ],
        )
        _update_events(s, sensor, ts, scores, params, res)
        state = s.get(LeakDetectorState, sensor.id)
        if state is None:
            state = LeakDetectorState(sensor_id=sensor.id, state=b"", points=0)
            s.add(state)
        state.state = blob
        state.points = seen
        state.updated_at = datetime.utcnow()
        last_ts = pd.Timestamp(ts[-1]).to_pydatetime()
        sensor.watermark = last_ts
    if last_ts is None or now - last_ts > timedelta(minutes=params.offline_after_minutes):
        res.status = "offline"
        if rows:
            res.issues.append("data stopped")
    sensor.status = res.status
    sensor.last_error = None
    return res


def _bind(name: str):  # type: ignore[no-untyped-def]
    from sqlalchemy import bindparam

    return bindparam(name)


def _update_events(
    s: Session,
    sensor: LeakSensor,
    ts: np.ndarray,
    scores: np.ndarray,
    params: DetectParams,
    res: SensorResult,
) -> None:
    """Open an event when the score crosses the threshold; close after `close_after` low points."""
    event = s.scalar(
        select(LeakEvent).where(
            LeakEvent.sensor_id == sensor.id,
            LeakEvent.status == "open",
            LeakEvent.kind == "anomaly",
        )
    )
    for t, sc in zip(ts, scores, strict=True):
        t = pd.Timestamp(t).to_pydatetime()
        sc = float(sc)
        if event is None:
            if sc >= params.open_threshold:
                event = LeakEvent(
                    sensor_id=sensor.id,
                    kind="anomaly",
                    start=t,
                    peak_score=sc,
                    peak_ts=t,
                    status="open",
                    below_count=0,
                )
                s.add(event)
                res.opened += 1
            continue
        if sc > event.peak_score:
            event.peak_score, event.peak_ts = sc, t
        if sc < params.close_threshold:
            event.below_count += 1
            if event.below_count >= params.close_after:
                event.status, event.end = "closed", t
                res.closed += 1
                event = None
        else:
            event.below_count = 0
    s.flush()


def detect_group(
    url: str, group: str, params: DetectParams | None = None, now: datetime | None = None
) -> list[dict]:
    """One scheduled run for a sensor group: chunked transactions, a failing sensor isolated."""
    params = params or DetectParams()
    now = now or datetime.utcnow()
    engine = get_engine(url)
    with Session(engine) as s:
        sensors = s.execute(
            select(LeakSensor.id, LeakSensor.name)
            .where(LeakSensor.group == group)
            .order_by(LeakSensor.name)
        ).all()
    out: list[dict] = []
    for start in range(0, len(sensors), SENSOR_CHUNK):
        chunk = sensors[start : start + SENSOR_CHUNK]
        try:  # the common case: one transaction (one commit) for a chunk of sensors
            with Session(engine) as s, s.begin():
                out += [asdict(_process_one(s, sid, params, now)) for sid, _name in chunk]
            continue
        except Exception as exc:  # find the failing sensor: one transaction per sensor below
            _logger().warning(
                "a chunk of %d sensors failed (%s: %s); retrying them one at a time",
                len(chunk),
                type(exc).__name__,
                exc,
            )
        for sid, name in chunk:
            try:
                with Session(engine) as s, s.begin():
                    res = _process_one(s, sid, params, now)
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                res = SensorResult(sensor=name, status="error", error=message)
                with Session(engine) as s, s.begin():
                    s.execute(
                        update(LeakSensor)
                        .where(LeakSensor.id == sid)
                        .values(status="error", last_error=message[:2000])
                    )
            out.append(asdict(res))
    return out


def _process_one(s: Session, sid: int, params: DetectParams, now: datetime) -> SensorResult:
    sensor = s.get(LeakSensor, sid)
    if sensor is None:
        raise InputError(f"sensor id {sid} disappeared during the run")
    return _process_sensor(s, sensor, params, now)


def list_groups(url: str, groups: list[str] | None = None) -> list[str]:
    """Sensor groups present in the database (restricted to `groups` when given)."""
    with Session(get_engine(url)) as s:
        found = [
            g for (g,) in s.execute(select(LeakSensor.group).distinct().order_by(LeakSensor.group))
        ]
    return [g for g in found if groups is None or g in groups]


def open_events(url: str, groups: list[str] | None = None) -> list[dict]:
    """Open anomaly events with their sensor (for the report table)."""
    with Session(get_engine(url)) as s:
        q = (
            select(LeakEvent, LeakSensor.name, LeakSensor.group)
            .join(LeakSensor, LeakSensor.id == LeakEvent.sensor_id)
            .where(LeakEvent.status == "open")
            .order_by(LeakEvent.start)
        )
        rows = s.execute(q).all()
    return [
        {
            "event": e.id,
            "sensor": name,
            "group": g,
            "start": e.start.isoformat(),
            "peak_score": round(e.peak_score, 4),
            "peak_ts": e.peak_ts.isoformat() if e.peak_ts else None,
        }
        for e, name, g in rows
        if groups is None or g in groups
    ]


def render_plot(url: str, sensor: str, path: Path, points: int = 2000) -> Path:
    """PNG of a sensor's recent series, score and event spans (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with Session(get_engine(url)) as s:
        sid = s.scalar(select(LeakSensor.id).where(LeakSensor.name == sensor))
        rows = s.execute(
            select(LeakReading.ts, LeakReading.value, LeakReading.score)
            .where(LeakReading.sensor_id == sid)
            .order_by(LeakReading.ts.desc())
            .limit(points)
        ).all()[::-1]
        events = s.scalars(select(LeakEvent).where(LeakEvent.sensor_id == sid)).all()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    if rows:
        t = [r[0] for r in rows]
        ax1.plot(t, [np.nan if r[1] is None else r[1] for r in rows], lw=0.8)
        ax2.plot(t, [np.nan if r[2] is None else r[2] for r in rows], color="tab:red", lw=0.8)
        for e in events:
            end = e.end or t[-1]
            if end >= t[0]:
                for ax in (ax1, ax2):
                    ax.axvspan(max(e.start, t[0]), end, color="orange", alpha=0.3)
    ax1.set_title(sensor)
    ax1.set_ylabel("value")
    ax2.set_ylabel("score")
    ax2.set_ylim(0, 1.05)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# -- Prefect tasks -----------------------------------------------------------------------------
def _url() -> str:
    from headwater.settings import get_settings

    return get_settings().sqlalchemy_url()


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_is_transient)
def prepare_leak_database() -> int:
    """Apply the leak-detection migrations; return the number of sensor groups."""
    return len(list_groups(prepare_database(_url())))


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_is_transient)
def list_sensor_groups(groups: list[str] | None = None) -> list[str]:
    """Sensor groups to process this run."""
    return list_groups(_url(), groups)


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_is_transient)
def detect_sensor_group(group: str, params: dict, now: datetime | None = None) -> list[dict]:
    """Score the new readings of every sensor in one group (one task per group)."""
    logger = _logger()
    results = detect_group(_url(), group, DetectParams(**params), now)
    bad = [r for r in results if r["error"]]
    logger.info(
        "group %s: %d sensors, %d new points, %d errors",
        group,
        len(results),
        sum(r["new_points"] for r in results),
        len(bad),
    )
    for r in bad:
        logger.warning("sensor %s failed: %s", r["sensor"], r["error"])
    return results


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_is_transient)
def augment_sensor_baselines(max_score: float = 0.3) -> dict[str, int]:
    """Append recent normal data to the baselines of the sensors using them."""
    return augment_baselines(_url(), max_score=max_score)


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_is_transient)
def publish_leak_report(
    results: list[dict], groups: list[str] | None = None, plots: bool = True
) -> dict[str, Any]:
    """Publish the markdown summary, the open-events table and one PNG per alerting sensor."""
    import tempfile

    from headwater.storage import get_store, run_key
    from tasks.storage import publish_markdown, publish_table

    url = _url()
    events = open_events(url, groups)
    store = get_store()
    alerting = sorted({e["sensor"] for e in events} | {r["sensor"] for r in results if r["opened"]})
    plot_keys = []
    if plots:
        with tempfile.TemporaryDirectory() as tmp:
            for name in alerting[:50]:
                png = render_plot(url, name, Path(tmp) / f"{name}.png")
                plot_keys.append(
                    store.put_file(run_key("leak-detection", "plots", f"{name}.png"), png)
                )
    errors = [r for r in results if r["error"]]
    offline = [r["sensor"] for r in results if r["status"] == "offline"]
    md = [
        "# Leak detection run",
        "",
        f"- sensors: {len(results)}, new points: {sum(r['new_points'] for r in results)}",
        f"- events opened: {sum(r['opened'] for r in results)}, "
        f"closed: {sum(r['closed'] for r in results)}, open now: {len(events)}",
        f"- offline: {', '.join(offline) or 'none'}",
        f"- errors: {len(errors)}",
    ]
    for r in errors:
        md.append(f"  - `{r['sensor']}`: {r['error']}")
    issues = [r for r in results if r["issues"]]
    if issues:
        md += ["", "## Input issues", ""] + [
            f"- `{r['sensor']}`: {'; '.join(r['issues'])}" for r in issues[:100]
        ]
    if plot_keys:
        md += ["", "## Plots", ""] + [f"- `{k}`" for k in plot_keys]
    summary = "\n".join(md)
    store.put_bytes(run_key("leak-detection", "summary.md"), summary.encode())
    store.put_bytes(run_key("leak-detection", "open_events.json"), json.dumps(events).encode())
    publish_markdown(summary, "leak-detection-summary")
    publish_table(
        events or [{"event": None, "sensor": "-", "start": "-", "peak_score": 0}],
        "leak-detection-open-events",
    )
    return {
        "open_events": len(events),
        "plots": plot_keys,
        "errors": len(errors),
        "offline": offline,
    }


# -- evaluation ---------------------------------------------------------------------------------
def evaluate_nab_dir(data_dir: Path, out_dir: Path, config: dict | None = None) -> list[dict]:
    """Score every NAB series under `data_dir` in streaming order; write NAB results CSVs.

    Writes `out_dir/<category>/headwater_<file>.csv` (timestamp,value,anomaly_score,label);
    labels come from `data_dir/../labels/combined_windows.json` when present, else 0. The
    detector never sees labels; only the NAB probationary length (15 %, at most 750 rows) is
    taken from the series length, as NAB's detector interface does.
    """
    from tasks.leak_io import nab_files, read_nab_windows

    windows = read_nab_windows(Path(data_dir))
    files = nab_files(Path(data_dir))
    if not files:
        raise InputError(f"--nab-data {data_dir}: no category/file.csv series found")
    out = []
    for key, path in files:
        df = pd.read_csv(path)
        n = len(df)
        cfg = DetectorConfig(**{**(config or {}), "probation": int(min(0.15 * n, 750))})
        scores = StreamingDetector(cfg).update(
            pd.to_numeric(df["value"], errors="coerce").to_numpy()
        )
        ts = pd.to_datetime(df["timestamp"])
        label = np.zeros(n, dtype=int)
        for start, end in windows.get(key, []):
            label[((ts >= pd.Timestamp(start)) & (ts <= pd.Timestamp(end))).to_numpy()] = 1
        category, name = key.split("/", 1)
        target = Path(out_dir) / category / f"headwater_{name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(
            {
                "timestamp": df["timestamp"],
                "value": df["value"],
                "anomaly_score": np.round(scores, 6),
                "label": label,
            }
        ).to_csv(target, index=False)
        out.append(
            {"file": key, "rows": n, "windows": len(windows.get(key, [])), "out": str(target)}
        )
    return out
