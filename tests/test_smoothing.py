"""One-Euro filter: cuts jitter on a still signal, follows a ramp with little lag."""
from __future__ import annotations

import numpy as np
import pytest

from core.smoothing import BETA, D_CUTOFF, MIN_CUTOFF, OneEuroFilter, smoothing_factor

FPS = 30.0
FACE = 200.0  # px: the scale passed to the filter
NOISE = 0.003 * FACE  # per-frame landmark jitter, 0.6 px


def run(filt, frames, times=None, scale=FACE):
    if times is None:
        return np.stack([filt(x, scale=scale) for x in frames])
    return np.stack([filt(x, t, scale=scale) for x, t in zip(frames, times)])


def test_still_signal_jitter_cut():
    rng = np.random.default_rng(0)
    still = 300.0 + rng.normal(0, NOISE, (150, 68, 2))
    out = run(OneEuroFilter(), still)
    reduction = still[30:].std() / out[30:].std()
    assert reduction > 3.5, reduction  # ~4.5x measured
    assert abs(out[30:].mean() - 300.0) < 0.05


@pytest.mark.parametrize("speed", [0.25, 1.0])  # face sizes per second
def test_ramp_followed_with_small_lag(speed):
    rng = np.random.default_rng(1)
    t = np.arange(120) / FPS
    truth = (speed * FACE * t)[:, None, None] + np.zeros((1, 68, 2))
    out = run(OneEuroFilter(), truth + rng.normal(0, NOISE, truth.shape), t)
    per_frame = speed * FACE / FPS
    lag_frames = (truth[40:] - out[40:]).mean() / per_frame
    assert 0 <= lag_frames < 1.5, lag_frames  # ~1.0 frame at 0.25/s, ~0.4 at 1/s
    assert np.abs(truth[40:] - out[40:]).mean() < 1.5 * per_frame + NOISE


def test_timestamps_match_fps_and_first_sample_passes():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (20, 68, 2))
    a = run(OneEuroFilter(fps=FPS), x)
    b = run(OneEuroFilter(fps=5.0), x, np.arange(20) / FPS)  # timestamps override fps
    assert np.allclose(a, b)
    assert np.array_equal(a[0], x[0])
    f = OneEuroFilter()
    run(f, x)
    f.reset()
    assert np.array_equal(f(x[5]), x[5])


def test_scale_invariance():
    """Filtering pixels with scale = face size equals filtering face units with scale 1."""
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.normal(0, 0.01, (40, 68, 2)), 0)
    a = run(OneEuroFilter(), x * FACE, scale=FACE)
    b = run(OneEuroFilter(), x, scale=1.0)
    assert np.allclose(a, b * FACE)


def test_constants_and_validation():
    assert 0 < MIN_CUTOFF < D_CUTOFF and BETA > 0
    assert smoothing_factor(1 / FPS, 1e9) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        OneEuroFilter(min_cutoff=0)
    f = OneEuroFilter()
    f(np.zeros(3), 1.0)
    assert np.isfinite(f(np.ones(3), 1.0)).all()  # repeated timestamp: one frame interval
