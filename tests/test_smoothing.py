"""FaceSmoother (video mode's One-Euro filter, one cutoff per face): cuts jitter on a still face,
follows a ramp with little lag, smooths every point of a face alike, follows real timestamps."""
from __future__ import annotations

import numpy as np
import pytest

from core.smoothing import FACE_BETA, FACE_D_CUTOFF, FACE_MIN_CUTOFF, FaceSmoother, smoothing_factor

FPS = 30.0
FACE = 200.0  # px: the scale passed to the filter
NOISE = 0.003 * FACE  # per-frame landmark jitter, 0.6 px


def run(filt, frames, times=None, scale=FACE):
    if times is None:
        return np.stack([filt(x, scale=scale) for x in frames])
    return np.stack([filt(x, t, scale=scale) for x, t in zip(frames, times)])


def test_still_face_jitter_cut():
    rng = np.random.default_rng(0)
    still = 300.0 + rng.normal(0, NOISE, (150, 68, 2))
    out = run(FaceSmoother(), still)
    reduction = still[30:].std() / out[30:].std()
    # the issue-13 bar (2x); 2.4x measured with beta 100 (3.2x with beta 40: session 9 traded jitter
    # for lag, chosen on the video protocol's validation sequences, core.smoothing)
    assert reduction > 2.0, reduction
    assert abs(out[30:].mean() - 300.0) < 0.05


@pytest.mark.parametrize("speed", [0.25, 1.0])  # face sizes per second
def test_ramp_followed_with_small_lag(speed):
    rng = np.random.default_rng(1)
    t = np.arange(120) / FPS
    truth = (speed * FACE * t)[:, None, None] + np.zeros((1, 68, 2))
    out = run(FaceSmoother(), truth + rng.normal(0, NOISE, truth.shape), t)
    per_frame = speed * FACE / FPS
    lag_frames = (truth[40:] - out[40:]).mean() / per_frame
    assert 0 <= lag_frames < 0.6, lag_frames  # ~0.27 frame at 0.25/s, ~0.08 at 1/s
    assert np.abs(truth[40:] - out[40:]).mean() < 0.6 * per_frame + NOISE


def test_one_cutoff_for_the_whole_face():
    """Every coordinate of every point gets the same alpha: a face moving along x is followed in y
    as quickly (x_hat = a x + (1 - a) x_hat_prev with one a per frame)."""
    rng = np.random.default_rng(4)
    f = FaceSmoother()
    prev = f(rng.normal(0, 1, (68, 2)), 0.0, scale=FACE)
    for k in range(1, 20):
        x = rng.normal(0, 1, (68, 2)) + np.array([8.0 * k, 0.0])
        out = f(x, k / FPS, scale=FACE)
        a = f.last_alpha
        assert 0 < a < 1 and np.allclose(out, a * x + (1 - a) * prev)
        prev = out


def test_timestamps_match_fps_and_first_sample_passes():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (20, 68, 2))
    a = run(FaceSmoother(fps=FPS), x)
    b = run(FaceSmoother(fps=5.0), x, np.arange(20) / FPS)  # timestamps override fps
    assert np.allclose(a, b)
    assert np.array_equal(a[0], x[0])
    f = FaceSmoother()
    run(f, x)
    f.reset()
    assert np.array_equal(f(x[5]), x[5]) and f.last_alpha == 1.0


def test_scale_invariance():
    """Filtering pixels with scale = face size equals filtering face units with scale 1."""
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.normal(0, 0.01, (40, 68, 2)), 0)
    a = run(FaceSmoother(), x * FACE, scale=FACE)
    b = run(FaceSmoother(), x, scale=1.0)
    assert np.allclose(a, b * FACE)


def test_constants_and_validation():
    assert 0 < FACE_MIN_CUTOFF < FACE_D_CUTOFF and FACE_BETA > 0
    assert smoothing_factor(1 / FPS, 1e9) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        FaceSmoother(min_cutoff=0)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        FaceSmoother()(np.zeros(3))
    f = FaceSmoother()
    f(np.zeros((3, 2)), 1.0)
    assert np.isfinite(f(np.ones((3, 2)), 1.0)).all()  # repeated timestamp: one frame interval
