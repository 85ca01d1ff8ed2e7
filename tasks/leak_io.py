"""Pure parsers for the leak-detection capability: NAB, BattLeDIM and generic CSV readings.

Every parser returns a long DataFrame with columns `sensor, ts, value` (ts timezone-naive UTC,
value float, NaN kept so that the detector can report it) and never touches a database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from headwater.errors import InputError

FORMATS = ("nab", "battledim", "csv")


def _require(path: Path) -> Path:
    if not path.exists():
        raise InputError(f"input {path}: no such file or folder")
    return path


def _read_csv(path: Path, **kwargs: object) -> pd.DataFrame:
    """`pd.read_csv` whose parse errors name the input."""
    try:
        return pd.read_csv(_require(path), **kwargs)  # type: ignore[call-overload]
    except (
        pd.errors.EmptyDataError,
        pd.errors.ParserError,
        UnicodeDecodeError,
        IsADirectoryError,
    ) as exc:
        raise InputError(
            f"input {path}: not a readable CSV ({type(exc).__name__}: {exc})"
        ) from None


def read_nab_file(path: Path, sensor: str | None = None) -> pd.DataFrame:
    """One NAB series (`timestamp,value`) as long readings; the sensor defaults to the file stem."""
    df = _read_csv(path)
    if not {"timestamp", "value"} <= set(df.columns):
        raise InputError(
            f"input {path}: NAB files need columns timestamp,value, got {list(df.columns)}"
        )
    return pd.DataFrame(
        {
            "sensor": sensor or path.stem,
            "ts": pd.to_datetime(df["timestamp"], errors="coerce"),
            "value": pd.to_numeric(df["value"], errors="coerce"),
        }
    )


def nab_files(root: Path) -> list[tuple[str, Path]]:
    """`(category/file.csv, path)` for every series in a NAB data folder (or one file)."""
    root = _require(root)
    if root.is_file():
        return [(f"{root.parent.name}/{root.name}", root)]
    base = root / "data" if (root / "data").is_dir() else root
    found = sorted(base.glob("*/*.csv")) or sorted(base.glob("*.csv"))  # a category folder
    return [(f"{p.parent.name}/{p.name}", p) for p in found]


def read_nab(root: Path) -> pd.DataFrame:
    """Every NAB series under `root` (sensor name = file stem)."""
    frames = [read_nab_file(p) for _key, p in nab_files(root)]
    if not frames:
        raise InputError(f"input {root}: no NAB series (category/file.csv) found")
    return pd.concat(frames, ignore_index=True)


def read_nab_windows(data_dir: Path) -> dict[str, list[list[str]]]:
    """Windows from `DIR/../labels/combined_windows.json` (or `DIR/labels/...`), else empty."""
    for cand in (
        data_dir.parent / "labels" / "combined_windows.json",
        data_dir / "labels" / "combined_windows.json",
    ):
        if cand.is_file():
            return json.loads(cand.read_text())
    return {}


def read_battledim(path: Path) -> pd.DataFrame:
    """BattLeDIM SCADA wide CSV (`;`, decimal commas, CRLF, a column per sensor) as readings."""
    df = _read_csv(path, sep=";", decimal=",")
    if df.shape[1] < 2:
        raise InputError(f"input {path}: expected ';'-separated columns Timestamp;sensor...")
    tcol = df.columns[0]
    ts = pd.to_datetime(df[tcol], errors="coerce")
    long = (
        df.drop(columns=[tcol])
        .assign(ts=ts)
        .melt(id_vars="ts", var_name="sensor", value_name="value")
    )
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    return long[["sensor", "ts", "value"]]


def read_csv_readings(path: Path) -> pd.DataFrame:
    """Generic CSV: long `sensor,timestamp,value` or wide `timestamp,<sensor>...`."""
    df = _read_csv(path)
    cols = {c.lower(): c for c in df.columns}
    tcol = cols.get("timestamp") or cols.get("ts") or cols.get("time")
    if tcol is None:
        raise InputError(f"input {path}: no timestamp column (timestamp, ts or time)")
    if "sensor" in cols and "value" in cols:
        out = pd.DataFrame(
            {"sensor": df[cols["sensor"]].astype(str), "ts": df[tcol], "value": df[cols["value"]]}
        )
    else:
        out = df.melt(id_vars=tcol, var_name="sensor", value_name="value").rename(
            columns={tcol: "ts"}
        )
    out["ts"] = pd.to_datetime(out["ts"], errors="coerce")
    out["value"] = pd.to_numeric(out["value"], errors="coerce")
    return out[["sensor", "ts", "value"]]


def read_readings(fmt: str, path: Path) -> pd.DataFrame:
    """Dispatch on `fmt` (nab, battledim, csv)."""
    if fmt == "nab":
        return read_nab(path)
    if fmt == "battledim":
        return read_battledim(path)
    if fmt == "csv":
        return read_csv_readings(path)
    raise InputError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")


def read_battledim_leaks(path: Path) -> pd.DataFrame:
    """`leakages_info.yalm` (a CSV with a `#` header) as link, start, end, diameter, type, peak."""
    rows = []
    for line in _require(path).read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 6:
            raise InputError(
                f"input {path}: leak line {line!r} has {len(parts)} fields, expected 6"
            )
        rows.append(parts[:6])
    df = pd.DataFrame(rows, columns=["link", "start", "end", "diameter", "type", "peak"])
    for c in ("start", "end", "peak"):
        df[c] = pd.to_datetime(df[c])
    df["diameter"] = df["diameter"].astype(float)
    return df


@dataclass
class CleanReport:
    """What `clean_series` fixed in one sensor's batch."""

    duplicates: int = 0
    nan: int = 0
    bad_timestamps: int = 0
    out_of_order: int = 0
    gaps: int = 0
    notes: list[str] = field(default_factory=list)

    def any(self) -> bool:
        """Whether anything had to be fixed."""
        return bool(
            self.duplicates or self.nan or self.bad_timestamps or self.out_of_order or self.gaps
        )


def _clean_sorted(
    ts: object, values: object, rep: CleanReport
) -> tuple[np.ndarray, np.ndarray, CleanReport] | None:
    """Numpy fast path for what a database returns: valid, strictly increasing timestamps."""
    try:
        t = np.asarray(ts, dtype="datetime64[ns]")
        v = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return None
    if t.size < 2 or np.isnat(t).any():
        return None
    dt = np.diff(t.astype(np.int64))
    if (dt <= 0).any():
        return None
    rep.nan = int(np.isnan(v).sum())
    med = np.median(dt)
    rep.gaps = int((dt > 3 * med).sum()) if t.size > 2 and med > 0 else 0
    return t, v, rep


def clean_series(
    ts: pd.Series | np.ndarray, values: pd.Series | np.ndarray
) -> tuple[np.ndarray, np.ndarray, CleanReport]:
    """Sort by time, drop unparseable timestamps, average duplicates, count NaN and gaps.

    NaN values are kept (the detector carries the last value forward); a gap is an interval
    longer than 3x the median sampling interval.
    """
    rep = CleanReport()
    fast = _clean_sorted(ts, values, rep)
    if fast is not None:
        return fast
    t = pd.to_datetime(pd.Series(np.asarray(ts)), errors="coerce")
    v = pd.to_numeric(pd.Series(np.asarray(values, dtype=object)), errors="coerce").astype(float)
    bad_t = t.isna().to_numpy()
    rep.bad_timestamps = int(bad_t.sum())
    t, v = t[~bad_t].reset_index(drop=True), v[~bad_t].reset_index(drop=True)
    tv = t.to_numpy()
    if len(tv) > 1:
        rep.out_of_order = int((np.diff(tv.astype("datetime64[ns]").astype(np.int64)) < 0).sum())
    df = pd.DataFrame({"ts": t, "value": v})
    before = len(df)
    df = df.groupby("ts", sort=True)["value"].mean().reset_index()
    rep.duplicates = before - len(df)
    rep.nan = int(df["value"].isna().sum())
    if len(df) > 2:
        dt = np.diff(df["ts"].to_numpy().astype("datetime64[ns]").astype(np.int64))
        med = np.median(dt)
        rep.gaps = int((dt > 3 * med).sum()) if med > 0 else 0
    return df["ts"].to_numpy(), df["value"].to_numpy(dtype=float), rep
