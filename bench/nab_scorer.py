"""NAB-style scorer, implemented from the Numenta Anomaly Benchmark's published description.

Lavin & Ahmad, "Evaluating Real-time Anomaly Detection Algorithms - the Numenta Anomaly
Benchmark" (2015) and the NAB README: anomaly windows around each labelled anomaly, a scaled
sigmoid that rewards early detections inside a window and discounts false positives shortly
after one, only the first detection in a window counts, missed windows cost A_FN, detections in
the probationary period (first 15 %, at most 750 rows) are ignored (a window lying wholly inside
it is not counted), one threshold per detector and profile optimised over the whole corpus by
NAB's exact sweep over every distinct score (`Sweeper.calcScoreByThreshold`), and scores
normalised so that the null detector (never detects) scores 0 and the perfect detector (first
row of every window) scores 100. Checked (outside this repository) against NAB's own sweeper,
numenta/NAB `nab/sweeper.py`: the same thresholds and raw scores on this corpus.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tp": 1.0, "fp": 0.11, "tn": 1.0, "fn": 1.0},
    "reward_low_FP_rate": {"tp": 1.0, "fp": 0.22, "tn": 1.0, "fn": 1.0},
    "reward_low_FN_rate": {"tp": 1.0, "fp": 0.11, "tn": 1.0, "fn": 2.0},
}


def scaled_sigmoid(position: np.ndarray | float) -> np.ndarray:
    """NAB's scaled sigmoid: ~1 early in a window, 0 at its end, -1 well after it."""
    pos = np.asarray(position, dtype=float)
    val = 2.0 / (1.0 + np.exp(5.0 * pos)) - 1.0
    return np.where(pos >= 3.0, -1.0, val)


MAX_TP = float(scaled_sigmoid(-1.0))


def probationary_length(n: int, percent: float = 0.15) -> int:
    """Rows at the start whose detections are ignored."""
    return math.floor(min(percent * n, percent * 5000))


@dataclass
class ScoredFile:
    """Per-row scoring material of one file, independent of threshold and profile."""

    name: str
    scores: np.ndarray  # anomaly score per row
    window_id: np.ndarray  # index of the window a row lies in, -1 outside
    position: np.ndarray  # sigmoid argument per row (relative position in / past a window)
    has_prev_window: np.ndarray  # outside rows: whether a window precedes them
    probation: int
    n_windows: int  # windows with at least one row after the probationary period


def prepare_file(
    name: str, timestamps: pd.Series, scores: np.ndarray, windows: list[list[str]]
) -> ScoredFile:
    """Map windows onto row indices and pre-compute each row's sigmoid position."""
    ts = pd.to_datetime(timestamps).to_numpy()
    n = len(ts)
    window_id = np.full(n, -1, dtype=int)
    position = np.zeros(n)
    has_prev = np.zeros(n, dtype=bool)
    bounds = []
    probation = probationary_length(n)
    for k, (start, end) in enumerate(windows):
        lo = int(np.searchsorted(ts, np.datetime64(pd.Timestamp(start)), side="left"))
        hi = int(np.searchsorted(ts, np.datetime64(pd.Timestamp(end)), side="right")) - 1
        if hi < lo:
            continue
        bounds.append((lo, hi))
        width = float(hi - lo + 1)
        idx = np.arange(lo, hi + 1)
        window_id[idx] = k
        position[idx] = -(hi - idx + 1) / width
    # rows after a window are scored relative to the end of the preceding window
    prev_hi, prev_width = None, None
    cursor = 0
    for lo, hi in [*bounds, (n, n)]:
        seg = np.arange(cursor, lo)
        if prev_hi is not None and len(seg):
            position[seg] = np.abs(prev_hi - seg) / max(prev_width - 1.0, 1.0)
            has_prev[seg] = True
        prev_hi, prev_width = hi, float(hi - lo + 1)
        cursor = hi + 1
    # NAB drops probationary rows before scoring: a window lying wholly inside the probationary
    # period is neither a detection nor a miss
    return ScoredFile(
        name=name,
        scores=np.asarray(scores, dtype=float),
        window_id=window_id,
        position=position,
        has_prev_window=has_prev,
        probation=probation,
        n_windows=sum(1 for _lo, hi in bounds if hi >= probation),
    )


def score_file(f: ScoredFile, threshold: float, profile: dict[str, float]) -> dict[str, float]:
    """Raw NAB score of one file at `threshold` for `profile`, with TP/FP/FN counts."""
    det = f.scores >= threshold
    det[: f.probation] = False
    total, tp = 0.0, 0
    # true positives: the first detection in each window
    hits = np.flatnonzero(det & (f.window_id >= 0))
    if hits.size:
        _w, first = np.unique(f.window_id[hits], return_index=True)
        tp = int(first.size)
        total += profile["tp"] * float(scaled_sigmoid(f.position[hits[first]]).sum()) / MAX_TP
    out = det & (f.window_id < 0)
    fp = int(out.sum())
    if fp:
        unweighted = np.where(f.has_prev_window[out], scaled_sigmoid(f.position[out]), -1.0)
        total += profile["fp"] * float(unweighted.sum())
    fn = f.n_windows - tp
    total -= profile["fn"] * fn
    return {"score": total, "tp": tp, "fp": fp, "fn": fn}


def corpus_score(files: list[ScoredFile], threshold: float, profile: dict[str, float]) -> dict:
    """Sum of the raw scores and counts of every file at one threshold."""
    agg = {"score": 0.0, "tp": 0, "fp": 0, "fn": 0}
    for f in files:
        part = score_file(f, threshold, profile)
        for k in agg:
            agg[k] += part[k]
    return agg


def sweep(files: list[ScoredFile], profile: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Corpus score at every distinct score value used as threshold (NAB's exact sweep).

    NAB's `Sweeper.calcScoreByThreshold`: all scorable rows of the corpus sorted by descending
    score; lowering the threshold past a row adds its FP weight, or raises its window's value to
    the row's TP weight when that is higher (the earliest detection counts). Returns the
    thresholds (descending, starting with 1.1: nothing detected) and the score at each.
    """
    scores, deltas = [], []
    n_windows = 0
    for f in files:
        rows = np.arange(f.probation, f.scores.size)
        sc = f.scores[rows]
        win = f.window_id[rows]
        pos = f.position[rows]
        delta = np.zeros(rows.size)
        out = win < 0
        unweighted = np.where(f.has_prev_window[rows[out]], scaled_sigmoid(pos[out]), -1.0)
        delta[out] = profile["fp"] * unweighted
        order = np.argsort(-sc, kind="stable")
        for k in np.unique(win[~out]):
            sel = order[win[order] == k]  # the window's rows, highest score first
            tp = profile["tp"] * scaled_sigmoid(pos[sel]) / MAX_TP
            best = np.maximum.accumulate(np.concatenate([[-profile["fn"]], tp]))
            delta[sel] = np.diff(best)
            n_windows += 1
        scores.append(sc)
        deltas.append(delta)
    allsc = np.concatenate(scores) if scores else np.zeros(0)
    alld = np.concatenate(deltas) if deltas else np.zeros(0)
    order = np.argsort(-allsc, kind="stable")
    allsc, total = allsc[order], -profile["fn"] * n_windows + np.cumsum(alld[order])
    # the score at a threshold counts every row at or above it: the last row of each run of ties
    last = np.flatnonzero(np.append(allsc[1:] != allsc[:-1], True)) if allsc.size else []
    thresholds = np.concatenate([[1.1], allsc[last]])
    values = np.concatenate([[-profile["fn"] * n_windows], total[last]])
    return thresholds, values


def optimise(files: list[ScoredFile], profile: dict[str, float]) -> dict:
    """Threshold maximising the corpus score over every distinct score (ties: the highest)."""
    thresholds, values = sweep(files, profile)
    t = float(thresholds[int(np.argmax(values))])
    return {**corpus_score(files, t, profile), "threshold": t}


def normalised_scores(files: list[ScoredFile]) -> dict[str, dict]:
    """NAB-normalised score (0 = null detector, 100 = perfect) for each profile."""
    out = {}
    n_windows = sum(f.n_windows for f in files)
    for name, profile in PROFILES.items():
        best = optimise(files, profile)
        null = -profile["fn"] * n_windows
        perfect = profile["tp"] * n_windows
        norm = 100.0 * (best["score"] - null) / (perfect - null) if perfect != null else 0.0
        out[name] = {**best, "normalised": round(norm, 2), "raw": round(best["score"], 4)}
    return out


def load_results(results_dir: Path, labels_path: Path) -> list[ScoredFile]:
    """Read `results_dir/<category>/<detector>_<file>.csv` (NAB results format) with windows."""
    windows = json.loads(labels_path.read_text())
    files = []
    for csv in sorted(results_dir.glob("*/*.csv")):
        category = csv.parent.name
        original = csv.name.split("_", 1)[1]
        key = f"{category}/{original}"
        if key not in windows:
            continue
        df = pd.read_csv(csv)
        files.append(
            prepare_file(key, df["timestamp"], df["anomaly_score"].to_numpy(), windows[key])
        )
    return files


def main() -> None:
    """Score a results folder: `python bench/nab_scorer.py RESULTS_DIR LABELS_JSON`."""
    import sys

    files = load_results(Path(sys.argv[1]), Path(sys.argv[2]))
    print(json.dumps(normalised_scores(files), indent=2))


if __name__ == "__main__":
    main()
