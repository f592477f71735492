"""One-Euro filter (Casiez et al., CHI 2012) over a face's landmarks: an exponential smoother whose
cutoff rises with speed, so a still face stops jittering while a moving one is followed with
little lag. FaceSmoother (what video mode uses, core.tracking) gives the whole face one cutoff, from
the RMS speed of its points, so a face moving along x is not held back in y when its y motion turns
around. It takes real timestamps: the smoothing per frame follows the actual interval (3 fps is not
smoothed as if it were 30). The in-browser webcam ports it (app/static/browser_webcam/smoothing.js).

Speed is measured in units of `scale` per second (video mode passes the face size, so the
constants below do not depend on the face's size in pixels)."""
from __future__ import annotations

import math

import numpy as np

DEFAULT_FPS = 30.0  # frame rate assumed when no timestamps are given


def smoothing_factor(dt: float, cutoff) -> np.ndarray | float:
    """alpha of an exponential smoother equivalent to a first-order low-pass at `cutoff` Hz."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


# FaceSmoother: tuned on the video protocol's validation sequences (benchmarks/video.py --split val):
# on 2 faces x still/translate/zoom/rotate x 3/10/30 fps, raw video-mode landmarks: still-face jitter at
# 30 fps 0.76 -> 0.13 px (face ~165 px), mean NME +0.09 points at most on the moving sequences
# (a per-coordinate One-Euro filter, min cutoff 0.05 Hz, beta 10: jitter 0.07 px but +1.1 to +1.9
# points when translating). Session 9, beta 40 -> 100 (3 validation faces, 30 fps, upright tracked
# crops): still-face jitter 0.065 -> 0.115 px (image mode 0.57), NME on the face-frames video and
# image mode both found: translate 3.23 -> 3.16 %, rotate 3.17 -> 3.15 %, crossing 4.17 -> 4.10 %
# (image 3.20 / 3.30 / 4.12 %); min cutoff 0.1 / 0.3 / 1 Hz changed nothing; beta 200 gained <= 0.02
# points for 1.5x the jitter.
FACE_MIN_CUTOFF = 0.1  # Hz: cutoff of a still face
FACE_BETA = 100.0  # Hz per (face size / s) of RMS point speed
FACE_D_CUTOFF = 0.7  # Hz: cutoff of the speed estimate


class FaceSmoother:
    """One-Euro with one cutoff per face: v = low-pass_{d_cutoff}((x - x_hat_prev) / dt) per point,
    speed = sqrt(mean_i |v_i|^2) / scale, cutoff = min_cutoff + beta speed,
    x_hat = a x + (1 - a) x_hat_prev with a = 1 / (1 + 1 / (2 pi cutoff dt)). x: (N, D)."""

    def __init__(self, min_cutoff: float = FACE_MIN_CUTOFF, beta: float = FACE_BETA,
                 d_cutoff: float = FACE_D_CUTOFF, fps: float = DEFAULT_FPS):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0 or fps <= 0:
            raise ValueError("min_cutoff, d_cutoff and fps must be > 0 and beta >= 0")
        self.min_cutoff, self.beta, self.d_cutoff, self.fps = min_cutoff, beta, d_cutoff, fps
        self.reset()

    def reset(self) -> None:
        self._x = self._dx = self._t = None
        self.last_alpha = 1.0

    def __call__(self, x, t: float | None = None, scale: float = 1.0) -> np.ndarray:
        """Filter one sample (N, D); `t` in seconds (None: previous t + 1 / fps; a non-increasing
        timestamp counts as one frame interval)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"FaceSmoother filters (N, D) point arrays, got shape {x.shape}")
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx = x.copy(), np.zeros_like(x)
            self._t = 0.0 if t is None else float(t)
            self.last_alpha = 1.0
            return x.copy()
        dt = 1.0 / self.fps if t is None else float(t) - self._t
        if not dt > 0:
            dt = 1.0 / self.fps
        self._t += dt
        a_d = smoothing_factor(dt, self.d_cutoff)
        self._dx = a_d * (x - self._x) / dt + (1 - a_d) * self._dx
        speed = float(np.sqrt(np.mean(np.sum(self._dx ** 2, axis=1)))) / max(float(scale), 1e-12)
        a = float(smoothing_factor(dt, self.min_cutoff + self.beta * speed))
        self._x = a * x + (1 - a) * self._x
        self.last_alpha = a
        return self._x.copy()
