"""The NAB-style scorer: null detector 0, perfect detector 100, known sigmoid values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.nab_scorer import PROFILES, normalised_scores, prepare_file, scaled_sigmoid, score_file


def _file(scores: np.ndarray) -> object:
    ts = pd.Series(pd.date_range("2020-01-01", periods=1000, freq="5min"))
    windows = [[str(ts[400]), str(ts[499])], [str(ts[800]), str(ts[899])]]
    return prepare_file("cat/f.csv", ts, scores, windows)


def test_scaled_sigmoid_matches_nab() -> None:
    assert float(scaled_sigmoid(-1.0)) == pytest.approx(0.98661, abs=1e-5)
    assert float(scaled_sigmoid(0.0)) == 0.0
    assert float(scaled_sigmoid(3.5)) == -1.0


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
