"""Parsers of NAB, BattLeDIM and CSV readings, and series cleaning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from headwater.errors import InputError
from tasks.leak_io import (
    clean_series,
    read_battledim,
    read_battledim_leaks,
    read_csv_readings,
    read_nab,
    read_readings,
)
from tasks.timeseries import best_baseline

DATA = Path("/work/shared/data/timeseries")
if not DATA.exists():  # pragma: no cover - other checkouts
    DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "timeseries"


def test_battledim_wide_decimal_commas_crlf(tmp_path: Path) -> None:
    src = DATA / "battledim" / "2019_SCADA_Flows.csv"
    sample = tmp_path / "flows.csv"
    sample.write_bytes(b"\r\n".join(src.read_bytes().split(b"\r\n")[:6]) + b"\r\n")
    df = read_battledim(sample)
    assert sorted(df["sensor"].unique()) == ["PUMP_1", "p227", "p235"]
    assert len(df) == 15
    first = df[(df.sensor == "p227")].sort_values("ts").iloc[0]
    assert first["ts"] == pd.Timestamp("2019-01-01 00:00:00")
    assert first["value"] == pytest.approx(88.14)


def test_battledim_leaks_file() -> None:
    leaks = read_battledim_leaks(DATA / "battledim" / "leakages_info.yalm")
    assert len(leaks) == 23
    assert leaks.iloc[4]["link"] == "p523" and leaks.iloc[4]["type"] == "abrupt"


def test_nab_folder() -> None:
    df = read_nab(DATA / "nab" / "data" / "realKnownCause")
    assert "nyc_taxi" in set(df["sensor"])
    assert df["value"].notna().all()


def test_csv_long_and_wide(tmp_path: Path) -> None:
    long = tmp_path / "long.csv"
    long.write_text("sensor,timestamp,value\na,2020-01-01 00:00,1\na,2020-01-01 00:10,x\n")
    df = read_csv_readings(long)
    assert df["value"].isna().sum() == 1
    wide = tmp_path / "wide.csv"
    wide.write_text("time,s1,s2\n2020-01-01 00:00,1,2\n")
    assert sorted(read_csv_readings(wide)["sensor"]) == ["s1", "s2"]


def test_bad_inputs_name_the_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_readings("nab", tmp_path / "missing")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="timestamp"):
        read_csv_readings(bad)
    with pytest.raises(InputError, match="--format"):
        read_readings("xml", bad)


def test_clean_series_sorts_dedups_and_reports() -> None:
    ts = [
        "2020-01-01 00:20",
        "2020-01-01 00:00",
        "2020-01-01 00:10",
        "2020-01-01 00:10",
        "bad",
        "2020-01-01 03:00",
    ]
    vals = [3.0, 1.0, 2.0, 4.0, 9.0, np.nan]
    t, v, rep = clean_series(ts, vals)
    assert list(v[:3]) == [1.0, 3.0, 3.0]
    assert rep.duplicates == 1 and rep.bad_timestamps == 1 and rep.nan == 1
    assert rep.out_of_order == 1 and rep.gaps == 1
    assert np.all(np.diff(t.astype("datetime64[ns]").astype(np.int64)) > 0)


def test_best_baseline_picks_the_matching_shape() -> None:
    t = np.arange(2000)
    rng = np.random.default_rng(1)
    library = {
        1: np.sin(2 * np.pi * t / 100) * 10 + 50,
        2: np.sign(np.sin(2 * np.pi * t / 40)) * 5 + 20,  # square wave
        3: rng.standard_normal(2000),
    }
    window = (
        np.sign(np.sin(2 * np.pi * (np.arange(120) + 7) / 40)) * 5
        + 20
        + 0.1 * rng.standard_normal(120)
    )
    assert best_baseline(window, library)[0] == 2
    window = np.sin(2 * np.pi * (np.arange(120) + 13) / 100) * 10 + 50
    assert best_baseline(window, library)[0] == 1
    assert best_baseline(np.array([1.0, np.nan]), library) == (None, float("inf"))


def test_empty_and_directory_inputs_are_input_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputError, match="not a readable CSV"):
        read_readings("battledim", empty)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(InputError, match="no NAB series"):
        read_readings("nab", tmp_path / "nothing")
