"""Leak detection against the local PostgreSQL: ingest, replay, scheduled runs, events, offline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from headwater.db import get_engine
from headwater.models.leak import LeakDetectorState, LeakEvent, LeakReading, LeakSensor
from headwater.settings import get_settings
from tasks.leak_io import read_battledim, read_nab_file
from tasks.timeseries import (
    DetectParams,
    detect_group,
    ingest_frame,
    prepare_database,
    replay_frame,
    save_baseline,
)
from tests.conftest import require_service

pytestmark = pytest.mark.integration

NAB = Path(get_settings().shared_data_dir) / "timeseries" / "nab"
BATTLEDIM = Path(get_settings().shared_data_dir) / "timeseries" / "battledim"
TEST_DB = "leak_test"


def _admin_url() -> str:
    url = get_settings().postgres_url.get_secret_value()
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh `leak_test` database on the local PostgreSQL, migrated."""
    require_service("postgres")
    with psycopg.connect(_admin_url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEST_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEST_DB}")
    base = get_settings().postgres_url.get_secret_value()
    url = base.rsplit("/", 1)[0] + f"/{TEST_DB}"
    get_engine.cache_clear()
    prepare_database(url)
    yield url
    get_engine(url).dispose()
    get_engine.cache_clear()


def _count(url: str, model: type, *where: object) -> int:
    with Session(get_engine(url)) as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_ingest_nab_and_battledim_idempotent(pg_url: str, tmp_path: Path) -> None:
    nab = read_nab_file(NAB / "data" / "realKnownCause" / "ambient_temperature_system_failure.csv")
    assert ingest_frame(pg_url, nab, "nab")["readings"] == len(nab)
    ingest_frame(pg_url, nab, "nab")  # again: upsert, no duplicates
    assert _count(pg_url, LeakReading) == len(nab)
    sample = tmp_path / "flows.csv"
    lines = (BATTLEDIM / "2019_SCADA_Flows.csv").read_bytes().split(b"\r\n")
    sample.write_bytes(b"\r\n".join(lines[:289]) + b"\r\n")  # one day
    res = ingest_frame(pg_url, read_battledim(sample), "battledim")
    assert res == {"sensors": 3, "readings": 864, "duplicates": 0, "skipped": 0}
    with Session(get_engine(pg_url)) as s:
        sid = s.scalar(select(LeakSensor.id).where(LeakSensor.name == "p227"))
        first = s.execute(
            select(LeakReading.value).where(LeakReading.sensor_id == sid).order_by(LeakReading.ts)
        ).scalar()
    assert first == pytest.approx(88.14)


def test_replay_feeds_ticks_and_runs_detection(pg_url: str, tmp_path: Path) -> None:
    sample = tmp_path / "flows.csv"
    lines = (BATTLEDIM / "2019_SCADA_Flows.csv").read_bytes().split(b"\r\n")
    sample.write_bytes(b"\r\n".join(lines[:121]) + b"\r\n")  # 10 hours
    calls: list = []

    def tick(now):  # one scheduled run per tick
        calls.append(detect_group(pg_url, "bd", DetectParams(), now))

    res = replay_frame(
        pg_url, read_battledim(sample), "bd", speed=0, tick=timedelta(minutes=60), on_tick=tick
    )
    assert res == {"ticks": 10, "readings": 360}
    assert len(calls) == 10
    # every run reads only the hour that arrived since the watermark
    assert [sum(r["new_points"] for r in c) for c in calls] == [36] * 10
    assert _count(pg_url, LeakReading, LeakReading.score.is_(None)) == 0


def test_scheduled_runs_open_and_close_event_in_labelled_window(pg_url: str) -> None:
    key = "artificialWithAnomaly/art_daily_jumpsup.csv"
    windows = json.loads((NAB / "labels" / "combined_windows.json").read_text())[key]
    df = read_nab_file(NAB / "data" / key)
    params = DetectParams(open_threshold=0.7, close_threshold=0.3, close_after=12)
    half = len(df) // 2
    ingest_frame(pg_url, df.iloc[:half], "art")
    first = detect_group(pg_url, "art", params, df.ts.iloc[half - 1].to_pydatetime())
    assert first[0]["new_points"] == half and first[0]["error"] is None
    ingest_frame(pg_url, df.iloc[half:], "art")
    second = detect_group(pg_url, "art", params, df.ts.iloc[-1].to_pydatetime())
    # state persisted: the second run read only the new points
    assert second[0]["new_points"] == len(df) - half
    with Session(get_engine(pg_url)) as s:
        state = s.scalar(select(LeakDetectorState))
        assert state is not None and state.points == len(df)
        events = s.scalars(select(LeakEvent).order_by(LeakEvent.start)).all()
    start, end = (pd.Timestamp(w) for w in windows[0])
    inside = [e for e in events if start <= pd.Timestamp(e.start) <= end]
    assert inside, f"no event inside {windows[0]}: {[(e.start, e.peak_score) for e in events]}"
    assert (
        inside[0].status == "closed"
        and inside[0].end is not None
        and inside[0].end > inside[0].start
    )


def test_offline_and_bad_sensor_do_not_stop_the_group(pg_url: str) -> None:
    t0 = pd.Timestamp("2024-01-01")
    ts = pd.date_range(t0, periods=300, freq="10min")
    good = pd.DataFrame({"sensor": "good", "ts": ts, "value": range(300)})
    silent = pd.DataFrame({"sensor": "silent", "ts": ts[:100], "value": 1.0})
    messy = pd.DataFrame(
        {
            "sensor": "messy",
            "ts": ts,
            "value": [float("nan") if i % 7 == 0 else 5.0 for i in range(300)],
        }
    )
    ingest_frame(pg_url, pd.concat([good, silent, messy]), "g")
    # a corrupt persisted state for one sensor must not stop the others
    with Session(get_engine(pg_url)) as s, s.begin():
        sid = s.scalar(select(LeakSensor.id).where(LeakSensor.name == "messy"))
        s.add(LeakDetectorState(sensor_id=sid, state=b"not a detector", points=0))
    res = {
        r["sensor"]: r for r in detect_group(pg_url, "g", DetectParams(), ts[-1].to_pydatetime())
    }
    assert res["good"]["status"] == "online" and res["good"]["new_points"] == 300
    assert res["silent"]["status"] == "offline"
    assert res["messy"]["status"] == "error" and res["messy"]["error"]
    with Session(get_engine(pg_url)) as s:
        statuses = dict(s.execute(select(LeakSensor.name, LeakSensor.status)).all())
    assert statuses == {"good": "online", "silent": "offline", "messy": "error"}


def test_new_sensor_gets_best_baseline(pg_url: str) -> None:
    import numpy as np

    t = np.arange(3000)
    save_baseline(pg_url, "sine", np.sin(2 * np.pi * t / 144) * 10 + 50)
    square = save_baseline(pg_url, "square", np.sign(np.sin(2 * np.pi * t / 60)) * 5 + 20)
    ts = pd.date_range("2024-01-01", periods=200, freq="10min")
    vals = np.sign(np.sin(2 * np.pi * (np.arange(200) + 11) / 60)) * 5 + 20
    ingest_frame(pg_url, pd.DataFrame({"sensor": "new", "ts": ts, "value": vals}), "b")
    res = detect_group(pg_url, "b", DetectParams(), ts[-1].to_pydatetime())
    assert res[0]["baseline"] == square
    with Session(get_engine(pg_url)) as s:
        assert s.scalar(select(LeakSensor.baseline_id).where(LeakSensor.name == "new")) == square


def test_night_flow_detector_flags_a_leak_like_step(pg_url: str) -> None:
    import numpy as np

    ts = pd.date_range("2024-01-01", periods=288 * 40, freq="5min")
    hours = ts.hour.to_numpy()
    rng = np.random.default_rng(3)
    flow = 50 + 30 * np.sin(2 * np.pi * (hours - 6) / 24) + rng.normal(0, 0.5, len(ts))
    flow[288 * 25 :] += 5.0  # a leak from day 25 on
    ingest_frame(pg_url, pd.DataFrame({"sensor": "inflow", "ts": ts, "value": flow}), "net")
    params = DetectParams(
        detector="night-flow", open_threshold=0.5, close_threshold=0.4, close_after=1
    )
    half = 288 * 20
    first = detect_group(pg_url, "net", params, ts[-1].to_pydatetime())
    assert first[0]["error"] is None and first[0]["new_points"] == len(ts)
    with Session(get_engine(pg_url)) as s:
        starts = [e.start for e in s.scalars(select(LeakEvent)).all()]
    assert starts and all(pd.Timestamp(x) >= ts[half + 288 * 5] for x in starts)
    assert min(pd.Timestamp(x) for x in starts) <= ts[288 * 28]
