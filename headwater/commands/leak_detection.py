"""CLI commands of the leak-detection capability (added to `headwater run`)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import typer

from headwater.commands.run import app
from headwater.errors import InputError


def _emit(result: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result, default=str))
    else:
        for k, v in result.items():
            typer.echo(f"{k}: {v}")


@app.command("leak-ingest")
def leak_ingest(
    path: Path = typer.Argument(
        ..., help="NAB folder/file, BattLeDIM SCADA CSV, or a readings CSV."
    ),
    fmt: str = typer.Option(..., "--format", help="nab | battledim | csv"),
    group: str = typer.Option("default", "--group", help="Sensor group of the new sensors."),
    unit: str | None = typer.Option(None, "--unit", help="Unit of the new sensors."),
    replay: bool = typer.Option(False, "--replay", help="Feed the data tick by tick as if live."),
    speed: float = typer.Option(0.0, "--speed", help="Replay speed-up (0: no waiting)."),
    tick_minutes: float = typer.Option(10.0, "--tick-minutes", help="Data time per replay tick."),
    max_ticks: int | None = typer.Option(
        None, "--max-ticks", help="Stop the replay after N ticks."
    ),
    detect: bool = typer.Option(
        True, "--detect/--no-detect", help="Replay: run detection after each tick."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Load readings into Headwater's database (upsert by sensor and timestamp)."""
    from datetime import timedelta

    from tasks.leak_io import read_readings
    from tasks.timeseries import (
        DetectParams,
        detect_group,
        ingest_frame,
        prepare_database,
        replay_frame,
    )

    url = prepare_database()
    frame = read_readings(fmt, path)
    if not replay:
        _emit({"format": fmt, "group": group, **ingest_frame(url, frame, group, unit)}, as_json)
        return
    runs = {"opened": 0, "closed": 0}

    def on_tick(now: datetime) -> None:
        for r in detect_group(url, group, DetectParams(), now):
            runs["opened"] += r["opened"]
            runs["closed"] += r["closed"]
            if r["error"]:
                print(f"sensor {r['sensor']}: {r['error']}", file=sys.stderr)

    res = replay_frame(
        url,
        frame,
        group,
        speed=speed,
        tick=timedelta(minutes=tick_minutes),
        max_ticks=max_ticks,
        on_tick=on_tick if detect else None,
    )
    _emit({"format": fmt, "group": group, "replay": True, **res, **runs}, as_json)


@app.command("leak-detect")
def leak_detect(
    group: list[str] | None = typer.Option(None, "--group", help="Sensor group(s) (default: all)."),
    now: datetime | None = typer.Option(None, "--now", help="Reference time for offline checks."),
    plots: bool = typer.Option(True, "--plots/--no-plots"),
    detector: str = typer.Option(
        "matrix-profile", "--detector", help="matrix-profile | night-flow"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Run one scheduled leak-detection run now (the flow, in this process)."""
    from flows.leak_detection import LeakDetectionParams, leak_detection

    if detector not in ("matrix-profile", "night-flow"):
        raise InputError(f"--detector {detector!r}: use matrix-profile or night-flow")
    result = leak_detection(
        LeakDetectionParams(groups=group or None, now=now, plots=plots, detector=detector)  # type: ignore[arg-type]
    )
    _emit(result, as_json)


@app.command("leak-augment")
def leak_augment(as_json: bool = typer.Option(False, "--json")) -> None:
    """Augment baselines with recent normal data (the baseline flow, in this process)."""
    from flows.leak_detection import leak_baseline_augment

    _emit(leak_baseline_augment(), as_json)


@app.command("leak-evaluate")
def leak_evaluate(
    nab_data: Path = typer.Option(..., "--nab-data", help="NAB data folder (category/file.csv)."),
    out: Path = typer.Option(..., "--out", help="Results folder (NAB results format)."),
    score: bool = typer.Option(True, "--score/--no-score", help="Also run the NAB-style scorer."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Score every NAB series in streaming order and write NAB results CSVs (+ NAB scores)."""
    from tasks.timeseries import evaluate_nab_dir

    if not nab_data.is_dir():
        raise InputError(f"--nab-data {nab_data}: not a folder")
    files = evaluate_nab_dir(nab_data, out)
    result: dict = {"files": len(files), "out": str(out)}
    labels = nab_data.parent / "labels" / "combined_windows.json"
    if score and labels.is_file():
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from bench.nab_scorer import load_results, normalised_scores

        scores = normalised_scores(load_results(out, labels))
        result["nab"] = {k: v["normalised"] for k, v in scores.items()}
        result["detail"] = scores
    _emit(result, as_json)
