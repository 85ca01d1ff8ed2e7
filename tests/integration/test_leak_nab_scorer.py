"""The NAB-style scorer: null detector 0, perfect detector 100, known sigmoid values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.nab_scorer import (
    PROFILES,
    corpus_score,
    normalised_scores,
    optimise,
    prepare_file,
    scaled_sigmoid,
    score_file,
    sweep,
)


def _file(scores: np.ndarray) -> object:
    ts = pd.Series(pd.date_range("2020-01-01", periods=1000, freq="5min"))
    windows = [[str(ts[400]), str(ts[499])], [str(ts[800]), str(ts[899])]]
    return prepare_file("cat/f.csv", ts, scores, windows)


def test_scaled_sigmoid_matches_nab() -> None:
    assert float(scaled_sigmoid(-1.0)) == pytest.approx(0.98661, abs=1e-5)
    assert float(scaled_sigmoid(0.0)) == 0.0
    assert float(scaled_sigmoid(3.5)) == -1.0
    assert float(scaled_sigmoid(3.0)) == -1.0  # NAB: `>= 3.0` is a full false positive


def test_null_perfect_and_late_detectors() -> None:
    null = _file(np.zeros(1000))
    assert normalised_scores([null])["standard"]["normalised"] == 0.0
    perfect = np.zeros(1000)
    perfect[[400, 800]] = 1.0
    assert normalised_scores([_file(perfect)])["standard"]["normalised"] == pytest.approx(100.0)
    late = np.zeros(1000)
    late[[450, 850]] = 1.0  # middle of each window: 2 * scaledSigmoid(-0.5) / maxTP
    raw = score_file(_file(late), 0.5, PROFILES["standard"])["score"]
    assert raw == pytest.approx(2 * float(scaled_sigmoid(-0.5)) / float(scaled_sigmoid(-1.0)))


def test_false_positive_weights_and_probation() -> None:
    s = np.zeros(1000)
    s[100] = 1.0  # inside the probationary period (150 rows): ignored
    s[300] = 1.0  # before any window: a full false positive
    res = score_file(_file(s), 0.5, PROFILES["reward_low_FP_rate"])
    assert res["fp"] == 1 and res["fn"] == 2
    assert res["score"] == pytest.approx(-0.22 - 2.0)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_exact_sweep_equals_brute_force_over_every_threshold(profile: str) -> None:
    rng = np.random.default_rng(1)
    files = [_file(np.round(rng.random(1000) ** 4, 3)) for _ in range(3)]
    thresholds, values = sweep(files, PROFILES[profile])
    for t, v in zip(thresholds[1:], values[1:], strict=True):
        assert v == pytest.approx(corpus_score(files, float(t), PROFILES[profile])["score"])
    brute = max(corpus_score(files, float(t), PROFILES[profile])["score"] for t in thresholds)
    assert optimise(files, PROFILES[profile])["score"] == pytest.approx(brute)


def test_window_inside_the_probationary_period_is_not_counted() -> None:
    ts = pd.Series(pd.date_range("2020-01-01", periods=1000, freq="5min"))
    windows = [[str(ts[10]), str(ts[60])], [str(ts[800]), str(ts[899])]]
    f = prepare_file("cat/f.csv", ts, np.zeros(1000), windows)
    assert f.n_windows == 1  # the first window ends before row 150
    assert score_file(f, 0.5, PROFILES["standard"])["fn"] == 1
