"""The streaming detector: scores in [0, 1], no look-ahead, state round-trips, bad inputs."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from tasks.detector import DetectorConfig, StreamingDetector, score_series

CFG = DetectorConfig(
    m=16,
    history=600,
    exclusion=8,
    long_window=400,
    probation=100,
    min_history=80,
)


def _sine(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.sin(2 * np.pi * t / 50) + 0.05 * rng.standard_normal(n)


def test_scores_are_bounded_and_zero_in_probation() -> None:
    s = score_series(_sine(1500), CFG)
    assert s.shape == (1500,)
    assert np.all((s >= 0) & (s <= 1))
    assert np.all(s[: CFG.probation] == 0)


def test_spike_scores_highest_near_the_anomaly() -> None:
    x = _sine(1500)
    x[1200] += 6.0
    s = score_series(x, CFG)
    assert 1200 <= int(np.argmax(s)) <= 1200 + CFG.m
    assert s.max() > 0.6 and s.max() > s[CFG.probation : 1190].max()


def test_no_look_ahead_prefix_scores_do_not_change() -> None:
    x = _sine(1200)
    x[900:950] += 3.0
    full = score_series(x, CFG)
    prefix = score_series(x[:800], CFG)
    np.testing.assert_allclose(full[:800], prefix, atol=1e-9)


@pytest.mark.parametrize("split", [[1500], [700, 800], [1, 9, 490, 1000], [10] * 150])
def test_state_round_trip_equals_one_pass(split: list[int]) -> None:
    x = _sine(1500)
    x[1100:1130] = 0.0
    expected = score_series(x, CFG)
    det = StreamingDetector(CFG)
    got, pos = [], 0
    for size in split:
        det = StreamingDetector.from_bytes(det.to_bytes())
        got.append(det.update(x[pos : pos + size]))
        pos += size
    np.testing.assert_allclose(np.concatenate(got), expected, atol=1e-6)


def test_constant_series_and_constant_stretch_do_not_divide_by_zero() -> None:
    flat = np.full(800, 3.0)
    s = score_series(flat, CFG)
    assert np.all(np.isfinite(s)) and s.max() == 0.0
    x = _sine(1500)
    x[600:900] = 0.25
    s = score_series(x, CFG)
    assert np.all(np.isfinite(s))
    # left matrix profile: a flat subsequence is as far as possible from shaped ones (1.0) until
    # an earlier flat one is outside the exclusion zone (then 0), never NaN
    dist = StreamingDetector(CFG)._discords(x, 0)
    assert np.nanmax(dist[600:640]) == pytest.approx(1.0)
    assert np.all(dist[640:880] == 0.0)
    assert np.nanmax(dist[100:590]) < 0.6


def test_nan_and_inf_are_carried_forward() -> None:
    x = _sine(900)
    x[[10, 500, 501]] = np.nan
    x[600] = np.inf
    s = score_series(x, CFG)
    assert np.all(np.isfinite(s))


def test_too_little_history_scores_zero() -> None:
    det = StreamingDetector(CFG)
    assert det.update([1.0, 2.0, 3.0]).tolist() == [0.0, 0.0, 0.0]
    assert det.update([]).size == 0
    assert det.state.seen == 3


def test_new_extreme_beyond_the_range_scores_high() -> None:
    x = _sine(1000)
    x[700] = 1.3  # inside the range learnt so far plus its 5 % tolerance: not a range alarm
    x[900] = 1.6  # 30 % of the range above the largest value so far
    det = StreamingDetector(CFG)
    s = det.update(x)
    assert s[900] >= 0.9
    new = np.concatenate([det.state.values, [0.0, 1.4, 5.0]])
    assert det._range_score(new, det.state.values.size).tolist() == [0.0, 0.0, pytest.approx(1.0)]


def test_a_slide_past_the_old_extreme_in_small_steps_alarms() -> None:
    """Each step is within the tolerance of the one before; together they leave the range."""
    x = _sine(1000)
    x[800:830] = -1.05 - 0.025 * np.arange(30)  # 2.5 % of the range per point, 36 % in all
    s = score_series(x, CFG)
    assert s[800:830].max() >= 0.9
    step_by_step = score_series(x, replace(CFG, range_lag=1))  # HTM's rule: every earlier value
    assert step_by_step[800:830].max() < 0.9


def test_repeated_alarms_are_suppressed_then_rearm() -> None:
    cfg = CFG
    k = StreamingDetector(cfg).suppress_length
    assert k == round(cfg.suppress_ratio * cfg.probation)
    x = _sine(1600)
    x[[600, 600 + k // 2]] -= 4.0
    x[600 + 3 * k] -= 8.0
    s = score_series(x, cfg)
    assert s[600] > 0.5
    assert s[600 + k // 2] == 0.0  # a repeat within the suppression window
    assert s[600 + 3 * k] > 0.5  # a new alarm once it has passed


def test_a_burst_alarms_once_per_channel() -> None:
    """A value climbing through a burst alarms once; a new extreme within it still alarms."""
    cfg = replace(CFG, discord_weight=0.0, raw_discord_weight=0.0)  # the value channel only
    x = np.random.default_rng(0).standard_normal(1500)
    x[50] += 12.0  # sets the range, so the burst's first points are not new extremes
    x[1000:1004] += [6.5, 8.0, 9.5, 16.0]
    s = score_series(x, cfg)
    escalating = score_series(x, replace(cfg, burst_level=None))
    assert s[1000] > 0.5
    assert escalating[1002] > s[1000]  # a rise that beats the recent maximum...
    assert s[1002] == 0.0  # ...is the same burst's value alarm again
    assert s[1003] >= 0.9  # the range channel takes over: new evidence
    det = StreamingDetector(cfg)
    parts = [det.update(x[:1001])]
    det = StreamingDetector.from_bytes(det.to_bytes())  # the burst carries over a restart
    parts.append(det.update(x[1001:]))
    np.testing.assert_allclose(np.concatenate(parts), s, atol=1e-9)


def test_state_saved_without_the_range_fields_loads() -> None:
    det = StreamingDetector(CFG)
    det.update(_sine(300))
    head, _, body = det.to_bytes().partition(b"\n")
    meta = json.loads(head)
    for key in ("vmin", "vmax", "burst_channels"):
        meta.pop(key)
    for key in ("discord_cap", "burst_level", "burst_alarm", "range_lag"):  # settings added later
        meta["config"].pop(key)
    old = StreamingDetector.from_bytes(json.dumps(meta).encode() + b"\n" + body)
    assert old.state.vmin is None and old.state.burst_channels == 0
    assert old.update(_sine(50)).shape == (50,)


def test_amplitude_change_is_seen_by_the_raw_profile_only() -> None:
    x = _sine(1500)
    x[1200:] *= 0.3  # the same shape at a third of the amplitude: z-normalisation hides it
    zn, raw = StreamingDetector(CFG)._profiles(x, 0)
    assert np.nanmax(zn[1200:1300]) < 0.6
    assert np.nanmax(raw[1200:1232]) > 3 * np.nanmax(raw[300:1190])
    assert score_series(x, CFG)[1200:1300].max() > 0.5
    assert score_series(x, replace(CFG, raw_discord_weight=0.0))[1200:1300].max() < 0.5


def test_state_saved_by_the_novelty_era_loads_and_keeps_its_history() -> None:
    det = StreamingDetector(CFG)
    det.update(_sine(400))
    st = det.state
    # the layout before arrays were named: values, dists, recent, dz_hist, vz_hist, rdists,
    # and a config with the since-removed novelty setting
    old_arrays = [st.values, st.dists, st.recent, np.ones(7), np.ones(5), st.rdists]
    config = {**json.loads(det.to_bytes().partition(b"\n")[0])["config"], "novelty_window": 1000}
    meta = {"config": config, "seen": st.seen, "last_value": st.last_value,
            "sizes": [int(a.size) for a in old_arrays]}  # fmt: skip
    data = json.dumps(meta).encode() + b"\n" + b"".join(a.tobytes() for a in old_arrays)
    old = StreamingDetector.from_bytes(data)
    np.testing.assert_array_equal(old.state.values, st.values)
    np.testing.assert_array_equal(old.state.rdists, st.rdists)
    assert old.state.seen == 400 and old.update(_sine(50)).shape == (50,)
    with pytest.raises(ValueError, match="corrupt detector state"):
        StreamingDetector.from_bytes(data[:-8])
