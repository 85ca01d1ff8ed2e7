"""Leak-detection benchmark: NAB scores, BattLeDIM 2019 leaks, and the cost of a scheduled run.

    uv run python bench/leak_detection.py [--quick]

Writes bench/results/leak_detection.json. Anchors: NAB scoreboard (ARTime 74.9 standard, Numenta
HTM 70.5, CAD OSE 69.9, KNN CAD 58.0, Windowed Gaussian 39.6); BattLeDIM target >= 15 of 23
leaks with <= 10 false alarms; cost targets <= 10 s for 1,000 sensors x 10 new points and for
105,120 points. The baseline measured in the same run is a windowed-Gaussian detector (the
value channel alone: no discord, amplitude or range channel, no cap and no suppression), scored
by the same scorer.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.nab_scorer import load_results, normalised_scores  # noqa: E402
from headwater.settings import get_settings  # noqa: E402
from tasks.detector import DetectorConfig, NightFlowLeakDetector, StreamingDetector  # noqa: E402
from tasks.leak_io import read_battledim, read_battledim_leaks  # noqa: E402
from tasks.timeseries import evaluate_nab_dir  # noqa: E402

DATA = Path(get_settings().shared_data_dir) / "timeseries"
QUICK_NAB = ["artificialWithAnomaly", "realAdExchange"]
BASELINE = {
    "discord_weight": 0.0,
    "raw_discord_weight": 0.0,
    "suppress": 0,
    "suppress_ratio": 0.0,
    "value_cap": None,
    "spatial_tolerance": None,
}


def bench_nab(quick: bool, work: Path) -> dict:
    """NAB standard / low-FP / low-FN for the detector and the windowed-Gaussian baseline."""
    src = DATA / "nab"
    data = src / "data"
    if quick:  # a subset of categories, same layout
        data = work / "nab" / "data"
        for cat in QUICK_NAB:
            (data / cat).mkdir(parents=True, exist_ok=True)
            for f in (src / "data" / cat).glob("*.csv"):
                (data / cat / f.name).write_bytes(f.read_bytes())
        (work / "nab" / "labels").mkdir(parents=True, exist_ok=True)
        (work / "nab" / "labels" / "combined_windows.json").write_bytes(
            (src / "labels" / "combined_windows.json").read_bytes()
        )
    labels = data.parent / "labels" / "combined_windows.json"
    out: dict = {"files": len(list(data.glob("*/*.csv")))}
    for name, cfg in (("headwater", None), ("windowed_gaussian_baseline", BASELINE)):
        t0 = time.perf_counter()
        results = work / f"results_{name}"
        evaluate_nab_dir(data, results, cfg)
        scores = normalised_scores(load_results(results, labels))
        out[name] = {
            "seconds": round(time.perf_counter() - t0, 1),
            **{
                k: {
                    "score": v["normalised"],
                    "tp": v["tp"],
                    "fp": v["fp"],
                    "fn": v["fn"],
                    "threshold": v["threshold"],
                }
                for k, v in scores.items()
            },
        }
    out["ratio_standard_vs_baseline"] = round(
        out["headwater"]["standard"]["score"]
        / max(out["windowed_gaussian_baseline"]["standard"]["score"], 1e-9),
        3,
    )
    return out


def events_from_scores(
    ts: np.ndarray, scores: np.ndarray, open_t: float, close_t: float, close_after: int
) -> list[tuple]:
    """Hysteresis events (the flow's rule) as (start, end) timestamps."""
    events, start, below = [], None, 0
    for t, s in zip(ts, scores, strict=True):
        if start is None:
            if s >= open_t:
                start, below = t, 0
        elif s < close_t:
            below += 1
            if below >= close_after:
                events.append((start, t))
                start = None
        else:
            below = 0
    if start is not None:
        events.append((start, ts[-1]))
    return events


def bench_battledim(quick: bool) -> dict:
    """Leaks of 2019 detected from the SCADA flows and tank level (first alarm after onset)."""
    flows = read_battledim(DATA / "battledim" / "2019_SCADA_Flows.csv")
    levels = read_battledim(DATA / "battledim" / "2019_SCADA_Levels.csv")
    leaks = read_battledim_leaks(DATA / "battledim" / "leakages_info.yalm")
    if quick:  # the first quarter only
        flows = flows[flows["ts"] < pd.Timestamp("2019-04-01")]
        levels = levels[levels["ts"] < pd.Timestamp("2019-04-01")]
    frame = pd.concat([flows, levels])
    wide = flows.pivot_table(index="ts", columns="sensor", values="value").sort_index()
    wide["inflow_total"] = wide.get("p227", 0) + wide.get("p235", 0)
    alarms: list[tuple] = []
    t0 = time.perf_counter()
    points = 0
    for sensor in wide.columns:
        col = wide[sensor].dropna()
        det = NightFlowLeakDetector()
        scores = det.update(col.index.to_numpy(), col.to_numpy())
        points += len(col)
        # the CUSUM alarm resets the score: an alarm is where the score reaches 0.5 (limit)
        for start, _end in events_from_scores(col.index.to_numpy(), scores, 0.5, 0.5, 1):
            alarms.append((pd.Timestamp(start), sensor))
    # alarms of several sensors within a day are one alarm
    merged: list[tuple] = []
    for a, s in sorted(alarms):
        if merged and a - merged[-1][0] < pd.Timedelta(days=1):
            continue
        merged.append((a, s))
    alarms = merged
    seconds = time.perf_counter() - t0
    horizon = frame["ts"].max()
    in_scope = leaks[(leaks["start"] >= pd.Timestamp("2019-01-01")) & (leaks["start"] <= horizon)]
    detected, delays, used = 0, [], set()
    for _, leak in in_scope.iterrows():
        hit = [
            (a, s)
            for a, s in alarms
            if leak["start"]
            <= a
            <= min(leak["end"], max(leak["peak"], leak["start"]) + pd.Timedelta(days=7))
        ]
        if hit:
            detected += 1
            first = min(hit)
            delays.append((first[0] - leak["start"]).total_seconds() / 3600)
            used.update(hit)
    false_alarms = len([a for a in alarms if a not in used])
    return {
        "leaks_total": len(leaks),
        "leaks_starting_in_2019_in_scope": len(in_scope),
        "detected": detected,
        "median_delay_hours": float(np.median(delays)) if delays else None,
        "false_alarms": false_alarms,
        "alarms": len(alarms),
        "points": points,
        "seconds": round(seconds, 1),
        "rule": "minimum-night-flow CUSUM per flow meter and on the total inflow; alarms within a "
        "day merged; a leak counts as detected when an alarm starts within [start, min(end, peak + "
        "7 days)]; leaks that began in 2018 have no "
        "onset in the 2019 data and are not counted as detectable",
    }


def bench_cost(quick: bool, work: Path) -> dict:
    """One scheduled run over N sensors x 10 new 1-minute points (SQLite, state load/save) and
    a year of 5-minute data scored in one pass."""
    from sqlalchemy import insert

    from headwater.db import get_engine
    from headwater.models.leak import LeakDetectorState, LeakSensor
    from tasks.timeseries import DetectParams, detect_group, ingest_frame, prepare_database

    n_sensors = 100 if quick else 1000
    url = f"sqlite:///{work / 'cost.db'}"
    prepare_database(url)
    rng = np.random.default_rng(0)
    t = np.arange(3000)
    warm = StreamingDetector(DetectorConfig(probation=200, min_history=150))
    warm.update(np.sin(2 * np.pi * t / 60) + 0.1 * rng.standard_normal(3000))
    blob = warm.to_bytes()
    start = datetime(2024, 1, 1)
    engine = get_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(LeakSensor.__table__),
            [
                {
                    "name": f"s{i:04d}",
                    "group_name": "cost",
                    "status": "online",
                    "watermark": start - timedelta(minutes=1),
                }
                for i in range(n_sensors)
            ],
        )
        ids = [
            r[0]
            for r in conn.execute(LeakSensor.__table__.select().with_only_columns(LeakSensor.id))
        ]
        conn.execute(
            insert(LeakDetectorState.__table__),
            [{"sensor_id": i, "state": blob, "points": 3000} for i in ids],
        )
    ts = pd.date_range(start, periods=10, freq="1min")
    new = pd.DataFrame(
        {
            "sensor": np.repeat([f"s{i:04d}" for i in range(n_sensors)], 10),
            "ts": np.tile(ts, n_sensors),
            "value": rng.standard_normal(10 * n_sensors),
        }
    )
    ingest_frame(url, new, "cost")
    t0 = time.perf_counter()
    res = detect_group(url, "cost", DetectParams(), ts[-1].to_pydatetime())
    run_s = time.perf_counter() - t0
    assert sum(r["new_points"] for r in res) == 10 * n_sensors
    # pure detector cost of the same work, without the database (ratio baseline)
    t0 = time.perf_counter()
    for _ in range(n_sensors):
        d = StreamingDetector.from_bytes(blob)
        d.update(rng.standard_normal(10))
        d.to_bytes()
    pure_s = time.perf_counter() - t0
    year = read_battledim(DATA / "battledim" / "2019_SCADA_Flows.csv")
    series = year[year["sensor"] == "p227"].sort_values("ts")["value"].to_numpy()
    if quick:
        series = series[:10000]
    t0 = time.perf_counter()
    StreamingDetector(DetectorConfig()).update(series)
    year_s = time.perf_counter() - t0
    return {
        "sensors": n_sensors,
        "scheduled_run_seconds": round(run_s, 2),
        "detector_only_seconds": round(pure_s, 2),
        "db_overhead_ratio": round(run_s / max(pure_s, 1e-9), 2),
        "state_bytes": len(blob),
        "series_points": len(series),
        "series_seconds": round(year_s, 2),
        "points_per_second": round(len(series) / year_s),
    }


def main() -> None:
    """Run the benchmark and write bench/results/leak_detection.json."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="subset run (< 2 minutes)")
    ap.add_argument("--only", choices=["nab", "battledim", "cost"], default=None)
    args = ap.parse_args()
    out: dict = {
        "quick": args.quick,
        "command": " ".join(["uv run python bench/leak_detection.py", *sys.argv[1:]]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.only in (None, "nab"):
            out["nab"] = bench_nab(args.quick, work)
            print(json.dumps({"nab": out["nab"]}, indent=1), flush=True)
        if args.only in (None, "battledim"):
            out["battledim"] = bench_battledim(args.quick)
            print(json.dumps({"battledim": out["battledim"]}, indent=1), flush=True)
        if args.only in (None, "cost"):
            out["cost"] = bench_cost(args.quick, work)
            print(json.dumps({"cost": out["cost"]}, indent=1), flush=True)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    target = results / "leak_detection.json"
    previous = json.loads(target.read_text()) if target.is_file() else None
    if args.quick and previous and not previous.get("quick"):  # keep the full results
        previous["quick_run"] = out
        out = previous
    elif args.only and target.is_file():  # a partial run updates its part of the last results
        merged = json.loads(target.read_text())
        merged.update({k: v for k, v in out.items() if k not in ("command", "quick")})
        merged.setdefault("partial_runs", []).append(out["command"])
        out = merged
    target.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
