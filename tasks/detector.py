"""Streaming anomaly detectors: left matrix profile + value statistics, no look-ahead.

Plain numpy (no numba, so nothing is compiled on a scheduled run). A detector keeps a bounded
state (recent raw values, recent statistics, counters) that serialises to bytes, so a scheduled
run only pays for its new points. `StreamingDetector` scores every point in [0, 1]:

* discord channel: z-normalised distance of the newest subsequence to its nearest neighbour in
  the last `history` subsequences (the left matrix profile), as an anomaly likelihood: the
  Gaussian tail probability of its short mean under the mean/std of the previous `long_window`
  distances (HTM's "anomaly likelihood", learnt online from the past only);
* amplitude channel: the same likelihood on the Euclidean distance of the raw (not
  z-normalised) subsequences, which sees a change of amplitude or level that z-normalisation
  hides (a lower daily peak, a quieter stretch);
* value channel: the two-sided tail probability of the raw value under the mean/std of the
  previous `long_window` values (spikes, level shifts, flat-lines that z-normalisation hides),
  capped at `value_cap` so that a burst of extreme values is one alarm;
* range channel: a value beyond the range seen until `range_lag` points ago by more than
  `spatial_tolerance` of it (HTM's "spatial anomaly", which compares with every earlier value
  and so misses a slow slide past the old extreme) scores at least 0.9;
* the score is the maximum of the channels' -log10(tail), squashed to [0, 1) (tail 1e-10 ->
  0.5), so one threshold fits every series; every likelihood is capped (`value_cap`, `discord_cap`):
  beyond 1e-20 a Gaussian tail is not credible, and an uncapped channel escalates point by point
  through a burst that a capped one has already announced;
* a point keeps its score only when it exceeds every raw score of the previous `suppress` points
  (or `suppress_ratio` x `probation`): NAB and operators reward the first alarm about an anomaly,
  repeats only cost false positives. Within a burst (consecutive raw scores of at least
  `burst_level`) each channel alarms once (its first score of at least `burst_alarm`); a
  different channel taking over may alarm again. These rules do not depend on the final
  threshold. The first `probation` points score 0.

`NightFlowLeakDetector` is the water-network specialist: a CUSUM on each day's mean night flow.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


@dataclass
class DetectorConfig:
    """Settings of the detector (the same for every series)."""

    m: int = 32  # subsequence length of the matrix profile
    history: int = 3000  # subsequences searched for the nearest neighbour
    exclusion: int = 16  # trivial-match exclusion zone (points)
    long_window: int = 1500  # window of the likelihood's mean/std
    short_window: int = 3  # short average of the discord distance
    value_short: int = 1  # short average of raw values
    min_history: int = 200  # points needed before any non-zero score
    probation: int = 750  # points scored 0 at the start of a series
    suppress: int = 400  # points after a score whose lower scores are damped
    # when > 0, the suppression lasts this fraction of the probationary period instead (CAD OSE's
    # rest period on NAB is a fifth of it): a series that is learnt quickly alarms more often
    suppress_ratio: float = 0.5
    damp: float = 0.0  # factor applied to damped scores
    value_weight: float = 1.0  # weight of the value channel
    value_cap: float | None = 20.0  # cap of the value channel's -log10(tail) (None: no cap)
    spatial_tolerance: float | None = 0.05  # new extreme beyond range * this: alarm (None: off)
    # the range is that of the values until this many points ago (1: every earlier value), so a
    # slide past the old extreme in steps each within the tolerance still alarms
    range_lag: int = 32
    discord_weight: float = 1.0  # weight of the discord channel
    raw_discord_weight: float = 1.0  # weight of the amplitude-aware (not z-normalised) channel
    discord_cap: float | None = 20.0  # cap of the discord channels' -log10(tail) (None: no cap)
    # a burst: consecutive raw scores of at least `burst_level` (tail ~3e-3); within one, a
    # channel's escalation after its own kept score of at least `burst_alarm` (tail 1e-10) is a
    # repeat (None, or no suppression: no burst rule)
    burst_level: float | None = 0.2
    burst_alarm: float = 0.5
    chunk: int = 1024  # new points handled per matrix product


def _empty() -> np.ndarray:
    return np.zeros(0)


ARRAYS = ("values", "dists", "recent", "rdists")
#: The arrays of states saved before their names were: in this order, as many as their sizes.
_UNNAMED_ARRAYS = ("values", "dists", "recent", "dz_hist", "vz_hist", "rdists")


@dataclass
class DetectorState:
    """Everything the detector must remember between scheduled runs."""

    seen: int = 0
    values: np.ndarray = field(default_factory=_empty)  # last raw values
    dists: np.ndarray = field(default_factory=_empty)  # last discord distances
    recent: np.ndarray = field(default_factory=_empty)  # last raw combined scores
    rdists: np.ndarray = field(default_factory=_empty)  # last raw (Euclidean) discord distances
    last_value: float | None = None
    vmin: float | None = None  # smallest and largest value until `range_lag` points ago
    vmax: float | None = None
    burst_channels: int = 0  # bit set of the channels that alarmed in the burst still going


CHANNELS = ("discord", "amplitude", "value", "range")  # bit i of `burst_channels`


def _neg_log10_tail(z: np.ndarray) -> np.ndarray:
    """-log10 of the standard normal upper tail at z (no underflow for large z)."""
    from scipy.special import log_ndtr

    return -log_ndtr(-np.asarray(z, dtype=float)) / math.log(10.0)


def _squash(nlt: np.ndarray) -> np.ndarray:
    """Map -log10(tail) to [0, 1) without saturating: tail 1e-10 -> 0.5, 1e-30 -> 0.75."""
    nlt = np.maximum(nlt, 0.0)
    return nlt / (nlt + 10.0)


def _windowed_stats(
    arr: np.ndarray, ends: np.ndarray, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of arr[max(0, e-length):e] for every e in `ends` (cumulative sums)."""
    cs = np.concatenate([[0.0], np.cumsum(arr)])
    cs2 = np.concatenate([[0.0], np.cumsum(arr * arr)])
    ends = np.maximum(ends, 0)
    starts = np.maximum(ends - length, 0)
    cnt = np.maximum(ends - starts, 1)
    mean = (cs[ends] - cs[starts]) / cnt
    var = (cs2[ends] - cs2[starts]) / cnt - mean * mean
    return mean, np.sqrt(np.maximum(var, 0.0))


class StreamingDetector:
    """Left-matrix-profile anomaly detector with persisted state."""

    def __init__(self, config: DetectorConfig | None = None, state: DetectorState | None = None):
        self.config = config or DetectorConfig()
        self.state = state or DetectorState()

    # -- persistence -------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Serialise config and state: a JSON header line, then the arrays as raw float64."""
        arrays = [np.ascontiguousarray(getattr(self.state, k), dtype=np.float64) for k in ARRAYS]
        meta = {
            "config": asdict(self.config),
            "seen": self.state.seen,
            "last_value": self.state.last_value,
            "vmin": self.state.vmin,
            "vmax": self.state.vmax,
            "burst_channels": self.state.burst_channels,
            "arrays": list(ARRAYS),
            "sizes": [int(a.size) for a in arrays],
        }
        return json.dumps(meta).encode() + b"\n" + b"".join(a.tobytes() for a in arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> StreamingDetector:
        """Restore a detector saved with `to_bytes`."""
        head, _, body = bytes(data).partition(b"\n")
        try:
            meta = json.loads(head)
            flat = np.frombuffer(body, dtype=np.float64)
            sizes = [int(n) for n in meta["sizes"]]
            names = meta.get("arrays") or _UNNAMED_ARRAYS[: len(sizes)]
            if flat.size != sum(sizes) or len(names) != len(sizes):
                raise ValueError("array sizes do not match the header")
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"corrupt detector state: {exc}") from None
        # arrays added since start empty; arrays no longer used (the novelty mode's) are skipped
        arrays, pos = {k: _empty() for k in ARRAYS}, 0
        for k, n in zip(names, sizes, strict=True):
            if k in arrays:
                arrays[k] = flat[pos : pos + n].copy()
            pos += n
        state = DetectorState(
            seen=int(meta["seen"]),
            last_value=meta["last_value"],
            vmin=meta.get("vmin"),  # absent in states saved before the range channel
            vmax=meta.get("vmax"),
            burst_channels=int(meta.get("burst_channels", 0)),  # absent before the burst rule
            **arrays,
        )
        known = {f.name for f in fields(DetectorConfig)}  # settings since removed are dropped
        return cls(DetectorConfig(**{k: v for k, v in meta["config"].items() if k in known}), state)

    # -- scoring -----------------------------------------------------------------------------
    @property
    def suppress_length(self) -> int:
        """Points after a score during which lower scores are damped."""
        cfg = self.config
        if cfg.suppress_ratio > 0:
            return max(1, round(cfg.suppress_ratio * cfg.probation))
        return cfg.suppress

    @property
    def _buffer_length(self) -> int:
        """Raw values kept between runs (the profiles' and the value statistics' past)."""
        cfg = self.config
        return max(cfg.history + cfg.m, cfg.long_window + cfg.value_short)

    def update(self, values: np.ndarray | list[float]) -> np.ndarray:
        """Consume new points in time order; return one score in [0, 1] per point."""
        new = np.asarray(values, dtype=np.float64).ravel()
        if new.size == 0:
            return np.zeros(0)
        new = self._fill_missing(new)
        out = np.empty(new.size)
        for start in range(0, new.size, self.config.chunk):
            out[start : start + self.config.chunk] = self._update_chunk(
                new[start : start + self.config.chunk]
            )
        return out

    def _fill_missing(self, new: np.ndarray) -> np.ndarray:
        """Replace NaN/inf by the last finite value (0 if none yet)."""
        bad = ~np.isfinite(new)
        if not bad.any():
            self.state.last_value = float(new[-1])
            return new
        new = new.copy()
        last = self.state.last_value if self.state.last_value is not None else 0.0
        for i in range(new.size):
            if bad[i]:
                new[i] = last
            else:
                last = new[i]
        self.state.last_value = float(last)
        return new

    def _update_chunk(self, new: np.ndarray) -> np.ndarray:
        cfg, st = self.config, self.state
        hist = st.values
        allv = np.concatenate([hist, new])
        b, h = new.size, hist.size
        dists_new, raw_new = self._profiles(allv, h)
        # discord likelihoods: short mean vs long distribution, excluding the short window
        d_score, st.dists = self._likelihood(st.dists, dists_new, relative_floor=False)
        d_score *= cfg.discord_weight
        # z-normalisation hides a change of amplitude (a lower daily peak, a quieter stretch):
        # the Euclidean distance of the raw subsequences sees it, in the series' own units
        r_score, st.rdists = self._likelihood(st.rdists, raw_new, relative_floor=True)
        r_score *= cfg.raw_discord_weight
        # value likelihood: two-sided
        vends = np.arange(h + 1, h + b + 1)
        vs_mean, _ = _windowed_stats(allv, vends, cfg.value_short)
        vl_mean, vl_std = _windowed_stats(allv, vends - cfg.value_short, cfg.long_window)
        scale = np.maximum(vl_std, 1e-6 * (1.0 + np.abs(vl_mean)))
        vz = np.abs(vs_mean - vl_mean) / scale
        v_nlt = _neg_log10_tail(vz) - math.log10(2.0)
        if cfg.value_cap is not None:
            # a bounded value channel: a burst of extreme points is one alarm (the first), not an
            # escalation that the suppression below lets through point after point
            v_nlt = np.minimum(v_nlt, cfg.value_cap)
        v_score = _squash(v_nlt) * cfg.value_weight
        v_score[vends < cfg.min_history] = 0.0
        g_score = self._range_score(allv, h) if cfg.spatial_tolerance is not None else np.zeros(b)
        channels = np.stack([d_score, r_score, v_score, g_score])  # in the order of CHANNELS
        combined = channels.max(axis=0)
        # probation and suppression of repeats (sequential: cheap)
        seen = st.seen + np.arange(1, b + 1)
        combined[seen <= cfg.probation] = 0.0
        # suppression independent of the final threshold: a point keeps its score only when it
        # exceeds every raw score of the previous `suppress` points (a new or escalating alarm)
        k = self.suppress_length
        prev = st.recent
        past = prev[-k:] if k > 0 else prev[:0]
        ext = np.concatenate([np.zeros(max(k - prev.size, 0)), past, combined])
        recent_max = sliding_window_view(ext, k)[:b].max(axis=1) if k > 0 else np.zeros(b)
        keep = combined > recent_max
        if cfg.burst_level is not None and k > 0:  # part of the suppression: off without it
            keep &= self._first_in_burst(combined, channels.argmax(axis=0), keep)
        out = np.where(keep, combined, combined * cfg.damp)
        st.recent = ext[-k:].copy() if k > 0 else _empty()
        st.seen += b
        st.values = allv[-self._buffer_length :].copy()
        return np.clip(out, 0.0, 1.0)

    def _first_in_burst(
        self, combined: np.ndarray, channel: np.ndarray, keep: np.ndarray
    ) -> np.ndarray:
        """False where a kept alarm repeats its channel's alarm earlier in the same burst.

        A burst is a run of raw scores of at least `burst_level`. In a burst of a heavy-tailed
        series (a flurry of tweets) the value channel's score climbs point by point and each
        rise beats the recent maximum; the first alarm has already told the operator. An alarm
        from a channel that has not alarmed in this burst (a new extreme after a value spike) is
        new evidence and is kept.
        """
        cfg, st = self.config, self.state
        level = float(cfg.burst_level if cfg.burst_level is not None else 0.0)
        first = np.ones(combined.size, dtype=bool)
        # points that end a burst, and the alarms that may repeat one (few: a Python loop)
        below = np.flatnonzero(combined < level)
        mask, n_below = st.burst_channels, 0
        for i in np.flatnonzero(keep & (combined >= max(cfg.burst_alarm, level))):
            ended = int(np.searchsorted(below, i))
            if ended > n_below:
                mask, n_below = 0, ended
            bit = 1 << int(channel[i])
            first[i] = not mask & bit
            mask |= bit
        if below.size > n_below:  # a burst ended after the last alarm
            mask = 0
        st.burst_channels = mask
        return first

    def _likelihood(
        self, hist: np.ndarray, new: np.ndarray, relative_floor: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Anomaly likelihood of new distances given the previous ones: (score, history)."""
        cfg = self.config
        b = new.size
        dall = np.concatenate([hist, new])
        valid = np.isfinite(dall)
        dfill = np.where(valid, dall, 0.0)
        ends = np.arange(hist.size + 1, hist.size + b + 1)
        s_mean, _ = _windowed_stats(dfill, ends, cfg.short_window)
        l_mean, l_std = _windowed_stats(dfill, ends - cfg.short_window, cfg.long_window)
        n_valid = np.cumsum(valid)[ends - 1]
        floor = 1e-3 * np.abs(l_mean) + 1e-12 if relative_floor else 1e-3
        z = (s_mean - l_mean) / np.maximum(l_std, floor)
        # a distance at or below its recent mean is not evidence of anything (a constant series
        # has z = 0 everywhere)
        nlt = _neg_log10_tail(z)
        if cfg.discord_cap is not None:
            nlt = np.minimum(nlt, cfg.discord_cap)
        score = np.where(z > 0, _squash(nlt), 0.0)
        score[~np.isfinite(new) | (n_valid < cfg.min_history)] = 0.0
        return score, dall[-(cfg.long_window + cfg.short_window) :].copy()

    def _range_score(self, allv: np.ndarray, h: int) -> np.ndarray:
        """Score of the points after index `h` of `allv` beyond the range by `spatial_tolerance`.

        HTM's "spatial anomaly" on NAB: a new extreme is an anomaly whatever its likelihood. The
        score is 0.9 plus a tenth of the excess (in units of the range, at most 1). The range is
        that of the values until `range_lag` points ago: a slide past the old extreme in small
        steps, each within the tolerance of the one before, still adds up to an excess.
        """
        st, tol = self.state, float(self.config.spatial_tolerance or 0.0)
        lag = min(max(1, self.config.range_lag), self._buffer_length)
        new = allv[h:]
        b, off = new.size, st.seen - h  # off: index in the stream of allv[0]
        lo0 = st.vmin if st.vmin is not None else np.inf
        hi0 = st.vmax if st.vmax is not None else -np.inf
        # the values that join the range during this chunk: stream indices seen - lag + 1 + j;
        # point i sees those with j < i (the range until `lag` points before it)
        pos = st.seen - lag + 1 + np.arange(b) - off
        have = pos >= 0  # not before the start of the stream (the buffer holds >= lag values)
        joining = np.where(have, allv[np.maximum(pos, 0)], np.nan)
        j_hi = np.where(have, joining, -np.inf)
        j_lo = np.where(have, joining, np.inf)
        prev_hi = np.maximum.accumulate(np.concatenate([[hi0], j_hi]))
        prev_lo = np.minimum.accumulate(np.concatenate([[lo0], j_lo]))
        span = prev_hi[:-1] - prev_lo[:-1]
        ok = np.isfinite(span) & (span > 0)
        safe = np.where(ok, span, 1.0)
        excess = np.where(ok, np.maximum(new - prev_hi[:-1], prev_lo[:-1] - new) / safe, 0.0)
        lo1, hi1 = float(prev_lo[-1]), float(prev_hi[-1])
        st.vmin = lo1 if math.isfinite(lo1) else None
        st.vmax = hi1 if math.isfinite(hi1) else None
        return np.where(excess > tol, 0.9 + 0.1 * np.minimum(excess, 1.0), 0.0)

    def _discords(self, allv: np.ndarray, h: int) -> np.ndarray:
        """Left-matrix-profile distance (in [0, 2]) for each point after index `h` of `allv`."""
        return self._profiles(allv, h)[0]

    def _profiles(self, allv: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
        """Left matrix profiles for each point after index `h` of `allv`: the z-normalised
        distance (in [0, 2]) and the Euclidean distance of the raw subsequences (per point)."""
        cfg = self.config
        m, b = cfg.m, allv.size - h
        res, raw = np.full(b, np.nan), np.full(b, np.nan)
        if allv.size < m:
            return res, raw
        q_idx = np.arange(h, h + b) - m + 1  # new subsequences: those ending at new points
        ok = q_idx >= 0
        if not ok.any():
            return res, raw
        q = q_idx[ok]
        lo = max(0, int(q[0]) - cfg.history)
        hi = int(q[-1]) - cfg.exclusion + 1
        if hi <= lo:
            return res, raw
        # centre on the window's mean so the cumulative sums below stay well conditioned
        seg = allv[lo : int(q[-1]) + m]
        seg = seg - seg.mean()
        subs = sliding_window_view(seg, m)  # row k: subsequence lo + k
        cs = np.concatenate([[0.0], np.cumsum(seg)])
        cs2 = np.concatenate([[0.0], np.cumsum(seg * seg)])
        mu = (cs[m:] - cs[:-m]) / m
        sd = np.sqrt(np.maximum((cs2[m:] - cs2[:-m]) / m - mu * mu, 0.0))
        qi, ci = q - lo, np.arange(0, hi - lo)  # ci: every candidate, in order
        # std floor relative to the scale of the series before each query (the std of its last
        # `long_window` points): near-flat stretches compare as flat, constant stretches do not
        # divide by zero, and the decision does not depend on how points were batched
        ends = q + m  # query q covers allv[q : q + m]
        _mean, scale = _windowed_stats(allv, ends, cfg.long_window)
        floor = np.maximum(1e-8, 0.02 * scale)
        fq = sd[qi] < floor
        # Pearson correlation of every candidate with every query from z-normalised rows (one
        # matrix product); the distance is sqrt(2 m (1 - corr)), here divided by sqrt(m)
        # (a z-normalised query has zero mean, so the candidates need no centring)
        zq = (subs[qi] - mu[qi, None]) / np.where(sd[qi] > 0, sd[qi], 1.0)[:, None]
        nq, nc = len(qi), hi - lo
        sdc = m * np.where(sd[:nc] > 0, sd[:nc], 1.0)
        norms = m * (sd * sd + mu * mu)  # squared norms of the (centred) raw subsequences
        if nq <= 32:  # a scheduled run's few points: sliding dot products, no copy
            win = seg[: nc + m - 1]
            corr = np.stack([np.correlate(win, z, "valid") for z in zq], axis=1) / sdc[:, None]
            dots = np.stack([np.correlate(win, r, "valid") for r in subs[qi]], axis=1)
            d2raw = norms[:nc, None] - 2.0 * dots
        else:  # a long series: matrix products (BLAS needs contiguous rows)
            cands = np.ascontiguousarray(subs[:nc])
            corr = (cands / sdc[:, None]) @ zq.T  # candidates x queries
            # |c - q|^2 - |q|^2 = |c|^2 - 2 c.q as one product of augmented matrices
            aug_c = np.concatenate([cands, norms[:nc, None]], axis=1)
            aug_q = np.concatenate([-2.0 * subs[qi], np.ones((nq, 1))], axis=1)
            d2raw = aug_c @ aug_q.T
        # flat vs shaped: as far as a shape is from zero (corr 1/2, distance 1); flat vs flat:
        # identical (corr 1). Only candidates below the largest floor can be flat for a query.
        maybe = np.flatnonzero(sd[ci] < floor.max())
        if maybe.size:
            rows = corr[maybe]
            rows[sd[ci[maybe], None] < floor[None, :]] = 0.5
            corr[maybe] = rows
        if fq.any():
            cols = np.flatnonzero(fq)
            corr[:, cols] = np.where(sd[ci, None] < floor[None, cols], 1.0, 0.5)
        cand = ci + lo
        # only the edges of the candidate range can be out of a query's allowed band
        nb = min(len(cand), len(q) + cfg.exclusion)
        nh = min(len(cand), len(q))
        out_tail = cand[-nb:, None] > (q[None, :] - cfg.exclusion)
        out_head = cand[:nh, None] < (q[None, :] - cfg.history)
        corr[-nb:][out_tail] = -np.inf
        corr[:nh][out_head] = -np.inf
        d2raw[-nb:][out_tail] = np.inf
        d2raw[:nh][out_head] = np.inf
        top = corr.max(axis=0)
        fin = np.isfinite(top)
        best = np.sqrt(2.0 * (1.0 - np.clip(np.where(fin, top, 0.0), -1.0, 1.0)))
        res[np.flatnonzero(ok)] = np.where(fin, best, np.nan)
        low = d2raw.min(axis=0) + norms[qi]
        raw[np.flatnonzero(ok)] = np.where(
            np.isfinite(low), np.sqrt(np.maximum(low, 0.0) / m), np.nan
        )
        return res, raw


def score_series(values: np.ndarray, config: DetectorConfig | None = None) -> np.ndarray:
    """Score a whole series in streaming order (used by evaluation and tests)."""
    return StreamingDetector(config).update(values)


@dataclass
class NightFlowConfig:
    """Settings of the minimum-night-flow leak detector (water networks)."""

    night_start_hour: int = 1  # night window [start, end) in local hours
    night_end_hour: int = 4
    baseline_days: int = 14  # trailing nights that form the baseline
    min_days: int = 7  # nights needed before alarms
    slack: float = 0.5  # CUSUM slack (robust sigmas)
    limit: float = 2.5  # CUSUM alarm level (robust sigmas; tuned on BattLeDIM 2019)
    rel_floor: float = 0.01  # sigma floor relative to the baseline level


class NightFlowLeakDetector:
    """Streaming CUSUM on the mean night flow of each day: a leak adds a persistent night flow.

    Scores are per point in [0, 1] (the CUSUM relative to its alarm level, squashed), updated
    when a night ends; after an alarm the baseline restarts, so the leak becomes the new normal
    and the next leak is a further increase.
    """

    def __init__(self, config: NightFlowConfig | None = None, state: dict | None = None):
        self.config = config or NightFlowConfig()
        self.state = state or {
            "nights": [],
            "day": None,
            "acc": 0.0,
            "cnt": 0,
            "cusum": 0.0,
            "score": 0.0,
        }

    def to_bytes(self) -> bytes:
        """Serialise config and state as JSON."""
        return json.dumps({"config": asdict(self.config), "state": self.state}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> NightFlowLeakDetector:
        """Restore a detector saved with `to_bytes`."""
        obj = json.loads(data)
        return cls(NightFlowConfig(**obj["config"]), obj["state"])

    def update(self, timestamps: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Consume points (time order); return a score per point."""
        cfg, st = self.config, self.state
        ts = np.asarray(timestamps, dtype="datetime64[m]")
        days = ts.astype("datetime64[D]")
        hours = ((ts - days).astype(np.int64) // 60).astype(int)
        out = np.empty(len(ts))
        for i in range(len(ts)):
            day = str(days[i])
            if st["day"] is not None and day != st["day"] and st["cnt"]:
                self._close_night(st["acc"] / st["cnt"])
                st["acc"], st["cnt"] = 0.0, 0
            st["day"] = day
            v = float(values[i])
            if cfg.night_start_hour <= hours[i] < cfg.night_end_hour and math.isfinite(v):
                st["acc"] += v
                st["cnt"] += 1
            out[i] = st["score"]
        return out

    def _close_night(self, mnf: float) -> None:
        cfg, st = self.config, self.state
        base = np.asarray(st["nights"][-cfg.baseline_days :], dtype=float)
        if len(base) >= cfg.min_days:
            med = float(np.median(base))
            sigma = max(
                1.4826 * float(np.median(np.abs(base - med))), cfg.rel_floor * abs(med), 1e-9
            )
            st["cusum"] = max(0.0, st["cusum"] + (mnf - med) / sigma - cfg.slack)
            r = st["cusum"] / cfg.limit
            st["score"] = float(r * r / (1.0 + r * r))
            if st["cusum"] >= cfg.limit:
                st["nights"], st["cusum"] = [], 0.0  # re-baseline on the new normal
        st["nights"].append(mnf)
        st["nights"] = st["nights"][-cfg.baseline_days :]
