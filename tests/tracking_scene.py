"""The synthetic scene behind the video-tracking tests (tests/test_tracking*.py): faces at known places,
a stand-in model that returns the landmarks of the face under a crop (core.landmarks crop convention) or
a high uncertainty when no face is there, and a detector that finds the visible faces."""
from __future__ import annotations

import numpy as np

from core.detectors import Detection
from core.tracking import TrackingConfig, VideoTracker
from tests.synth_faces import face_points

SIZE = 100  # face_points(SIZE): face ~70 px wide
FRAME = (360, 640, 3)
SIGMA_FACE, SIGMA_NONE = 0.01, 0.2  # crop units


def face_at(cx, cy, noise=0.0, rng=None):
    p = face_points(SIZE, noise=noise, rng=rng).astype(np.float64)
    return p - (p.min(0) + p.max(0)) / 2 + [cx, cy]


class Scene:
    """The faces of the current frame (front face last) and a stand-in model/detector."""

    def __init__(self):
        self.faces: list[np.ndarray] = []
        self.hidden: set[int] = set()  # faces behind another one: neither seen nor detected
        self.undetected: set[int] = set()  # faces the model sees but the detector misses (merged into another's box)
        self.pull = np.zeros(2)  # px added to the model's landmarks (not the detector's boxes): a pulled model
        self.detector_calls = 0

    def seen(self):
        return [f for i, f in enumerate(self.faces) if i not in self.hidden]

    def run(self, img, crops):
        pts, sig = [], []
        for cx, cy, side, _ in crops:  # upright faces: the crop's turn (their roll, ~0) is ignored
            best = min(self.seen(), key=lambda f: np.hypot(*(f.mean(0) - [cx, cy])), default=None)
            if best is not None and np.abs(best.mean(0) - [cx, cy]).max() < side / 2:
                lo, hi = np.array([cx, cy]) - side / 2, np.array([cx, cy]) + side / 2
                pts.append(np.clip(best + self.pull, lo + 1, hi - 1))  # the model cannot point outside its crop
                sig.append(SIGMA_FACE)
            else:  # nothing there: a template in the middle, very unsure
                pts.append(face_at(cx, cy) * 0 + face_at(cx, cy))
                sig.append(SIGMA_NONE)
        k = len(crops)
        return {"pts": np.stack(pts), "cov": None, "adj": np.zeros((k, 68, 68), np.float32), "sigma": np.array(sig)}

    def detect(self, img):
        self.detector_calls += 1
        h, w = img.shape[:2]
        out = []
        for f in (f for i, f in enumerate(self.faces) if i not in self.hidden | self.undetected):
            c = f.mean(0)
            if 0 <= c[0] < w and 0 <= c[1] < h:
                out.append(Detection(np.r_[f.min(0), f.max(0)] + [2, -2, 2, -2], 0.9))
        return out


def tracker(scene, **cfg):
    return VideoTracker(scene.run, scene.detect, TrackingConfig(**cfg))


def err(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b), axis=1).mean())


IMG = np.zeros(FRAME, np.uint8)
