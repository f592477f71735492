"""Synthetic robustness protocols, applied to the model's input crop and reproducible from a seed
(one RNG stream per face: seed and face index)."""
from __future__ import annotations

import cv2
import numpy as np

from . import camera
from .data import motion_blur_kernel

# Occlusion: one black ellipse per face; centre uniform in the central 80 % of the landmark box,
# semi-axes 15-35 % of the box's larger side, random orientation.
OCCLUSION_CENTRE_RANGE = 0.8
OCCLUSION_AXES = (0.15, 0.35)
# Motion blur: a line kernel of 7-21 px (at the model's 192 px input) at a random angle.
BLUR_LENGTH = (7, 21)
# Camera: the face is degraded as a crop of this side (core.camera.PROTOCOL), then resampled to the model's input.
CAMERA_CROP = 192


def face_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng((int(seed), int(index)))


def occluder(points: np.ndarray, rng: np.random.Generator) -> tuple[tuple[int, int], tuple[int, int], float]:
    """The occlusion ellipse (centre, semi-axes, angle in degrees; crop pixels) for the face whose
    landmarks (crop pixels) are `points`."""
    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    side = max(x1 - x0, y1 - y0)
    c = np.array([(x0 + x1) / 2, (y0 + y1) / 2]) + (rng.random(2) - 0.5) * OCCLUSION_CENTRE_RANGE * np.array([x1 - x0, y1 - y0])
    axes = rng.uniform(*OCCLUSION_AXES, size=2) * side
    return ((int(round(c[0])), int(round(c[1]))), (int(round(axes[0])), int(round(axes[1]))),
            float(rng.uniform(0, 180)))


def occlude(crop: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw a black ellipse over the face whose landmarks (crop pixels) are `points`."""
    centre, axes, angle = occluder(points, rng)
    out = crop.copy()
    cv2.ellipse(out, centre, axes, angle, 0, 360, (0, 0, 0), -1)
    return out


def hidden_points(size: int, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N,) bool: which of `points` (crop pixels) the occluder drawn from `rng` covers in a size x size
    crop (the same draw as `occlude` with an identically seeded rng)."""
    mask = np.zeros((size, size), np.uint8)
    centre, axes, angle = occluder(points, rng)
    cv2.ellipse(mask, centre, axes, angle, 0, 360, 1, -1)
    xy = np.clip(np.round(points).astype(int), 0, size - 1)
    return mask[xy[:, 1], xy[:, 0]].astype(bool)


def motion_blur(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a random-angle line kernel whose length scales with the crop size."""
    scale = crop.shape[0] / 192.0
    length = max(3, int(round(rng.integers(BLUR_LENGTH[0], BLUR_LENGTH[1] + 1) * scale)))
    return cv2.filter2D(crop, -1, motion_blur_kernel(length, rng.uniform(0, 180)))


def camera_frame(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A dim, noisy, JPEG-compressed webcam frame of the crop (core.camera.PROTOCOL)."""
    return camera.degrade(crop, rng, camera.PROTOCOL)
