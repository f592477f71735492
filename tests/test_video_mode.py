"""Video mode through FaceAligner(video=True) on tiny models with stand-ins (a centroid model on a
moving blob, a counting detector): tracking, reset, smoothing; the tracker's lost checks and its
turned-crop geometry. The tracker's decisions on synthetic scenes: tests/test_tracking*.py."""
from __future__ import annotations

import numpy as np
import torch

from core.detectors import Detection
from core.inference import FaceAligner
from core.landmarks import CROP_SCALE, apply_affine
from tests.test_inference import CentroidRunner, blob_image, shifted

torch.set_num_threads(1)


# --- video --------------------------------------------------------------------------------------
class CountingDetector:
    def __init__(self, box):
        self.box, self.calls = np.asarray(box, float), 0

    def detect(self, rgb):
        self.calls += 1
        return [Detection(self.box.copy(), 0.9, self.box.copy(), "fake")]


def test_video_mode_tracks_and_resets(tiny_weights):
    """A blob moving 2 px per frame, a stand-in model that puts a stable-size ring on it: the
    detector runs on frames 0 and 10 only, the tracked crop follows the blob."""
    x0, y0 = 120.0, 100.0
    frames = [blob_image(240, 320, x0 + 2 * i, y0) for i in range(12)]
    det = CountingDetector([x0 - 25, y0 - 25, x0 + 25, y0 + 25])
    fa = FaceAligner(tiny_weights, backend="torch", detector=det, video=True, threads=1)
    fa.runner = CentroidRunner(fa.input_size, ring=0.5 / CROP_SCALE)  # landmark box = crop / CROP_SCALE
    out = [fa.predict(f, timestamp=i / 30) for i, f in enumerate(frames)]
    assert all(len(f) == 1 for f in out)
    assert det.calls == 2  # frames 0 and 10 (REDETECT_EVERY = 10); the others are tracked
    assert all(f[0].score == 0.9 for f in out)
    centres = np.array([f[0].landmarks.mean(0) for f in out])
    truth = np.array([[x0 + 2 * i, y0] for i in range(12)])
    assert np.abs(centres - truth).max() < 3.0  # smoothed: at most ~1 frame of lag
    assert out[-1][0].box[0] > out[1][0].box[0] + 15  # the tracked box moves with the blob
    fa.reset()
    fa.predict(frames[0])
    assert det.calls == 3  # state forgotten: detect again
    fa.predict(frames[0][:200])  # another frame size: starts over by itself
    assert det.calls == 4


def test_video_mode_real_model_and_detector(tiny_weights, astronaut):
    fa = FaceAligner(tiny_weights, backend="torch", video=True, threads=1)
    out = [fa.predict(shifted(astronaut, 3 * i)) for i in range(4)]
    assert all(len(f) == 1 and f[0].landmarks.shape == (68, 2) for f in out)
    fa.reset()
    assert fa.predict(np.full((240, 320, 3), 128, np.uint8)) == []


def test_video_smoothing_reduces_jitter(tiny_weights):
    """A still 'face' (100 px) jittering by 0.5 px: video-mode landmarks jitter much less than
    per-image ones."""
    rng = np.random.default_rng(0)
    pos = np.array([150.0, 110.0]) + rng.normal(0, 0.5, (40, 2))
    frames = [blob_image(240, 320, x, y, sigma=8.0) for x, y in pos]
    box = [100, 60, 200, 160]
    raw = FaceAligner(tiny_weights, backend="torch", detector="none", threads=1)
    vid = FaceAligner(tiny_weights, backend="torch", detector=CountingDetector(box), video=True, threads=1)
    for fa in (raw, vid):
        fa.runner = CentroidRunner(fa.input_size, ring=0.5 / CROP_SCALE)
    r = np.stack([raw.predict(f, boxes=box)[0].landmarks.mean(0) for f in frames])
    s = np.stack([vid.predict(f)[0].landmarks.mean(0) for f in frames])
    assert r[10:].std(0).mean() > 0.35  # the per-image estimate follows the jitter
    # 0.6x measured: the whole face moving 0.5 px a frame reads partly as motion to the per-face
    # One-Euro (beta 100 since session 9, for less lag; per-point noise: 2.4x, tests/test_smoothing.py)
    assert s[10:].std(0).mean() < 0.7 * r[10:].std(0).mean()
    assert np.abs(s[10:].mean(0) - [150, 110]).max() < 0.5


def test_tracker_lost_checks():
    from core.tracking import Track, VideoTracker, box_crop

    vt = VideoTracker(run=None, detect=None)
    tr = Track(0, np.array([20.0, 20, 80, 80]), 0.9, 0.0)
    crop = box_crop(tr.box)
    assert vt._check(tr, np.full((68, 2), 5.0), None, crop, (100, 100, 3))[0]  # collapsed
    far = np.random.default_rng(0).uniform(500, 600, (68, 2))
    assert vt._check(tr, far, None, crop, (100, 100, 3))[0]  # outside the frame
    ok = np.random.default_rng(0).uniform(20, 80, (68, 2))
    assert not vt._check(tr, ok, 0.01, crop, (100, 100, 3))[0] and vt._check(tr, ok, 0.5, crop, (100, 100, 3))[0]


def test_in_crop_follows_the_turned_crop_matrix():
    """core.tracking.in_crop (crop units) agrees with the pixels of the crop matrix the model sees."""
    from core.landmarks import crop_matrix
    from core.tracking import in_crop

    pts = np.random.default_rng(1).uniform(50, 150, (68, 2))
    for angle in (0.0, 25.0, -70.0):
        crop = np.array([100.0, 90.0, 120.0, angle])
        m = crop_matrix(*crop[:3], out_size=256, angle_deg=-angle)
        want = (apply_affine(m, pts) + 0.5) / 256  # pixel centres -> [0, 1] units
        assert np.allclose(in_crop(pts, crop), want, atol=1e-9)
