"""Constants of the iBUG 300-W 68-point scheme and the crop convention shared by training,
evaluation and inference."""
from __future__ import annotations

import cv2
import numpy as np

NUM_LANDMARKS = 68
LEFT_EYE_OUTER = 36  # inter-ocular normalisation: outer eye corners (0-based)
RIGHT_EYE_OUTER = 45

# Crop convention: a square centred on the landmark bounding box, side = CROP_SCALE x its larger
# side. Training, evaluation ("default protocol") and inference (second pass) all use it.
CROP_SCALE = 1.3
INPUT_SIZE = 192
ANTIALIAS_BELOW = 0.5  # crops that shrink the image more than 2x are pre-resized with INTER_AREA

# Landmark curves (open unless listed in CLOSED_CURVES); used by the anisotropic direction loss,
# normal/tangent metrics, edge heatmaps and the UI.
CURVES: dict[str, list[int]] = {
    "jaw": list(range(0, 17)),
    "right_brow": list(range(17, 22)),
    "left_brow": list(range(22, 27)),
    "nose_bridge": list(range(27, 31)),
    "nose_base": list(range(31, 36)),
    "right_eye": list(range(36, 42)),
    "left_eye": list(range(42, 48)),
    "outer_lip": list(range(48, 60)),
    "inner_lip": list(range(60, 68)),
}
CLOSED_CURVES = {"right_eye", "left_eye", "outer_lip", "inner_lip"}


def _mirror_permutation() -> np.ndarray:
    """Index map i -> j such that after a horizontal flip, point i takes the role of point j."""
    pairs = [(i, 16 - i) for i in range(8)]  # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]  # brows
    pairs += [(31, 35), (32, 34)]  # nose base
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lip
    pairs += [(60, 64), (61, 63), (65, 67)]  # inner lip
    perm = np.arange(NUM_LANDMARKS)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


MIRROR_PERMUTATION = _mirror_permutation()


def curve_neighbours() -> np.ndarray:
    """(N, 2) indices of the previous and next point on each landmark's curve (self at open ends;
    -1, -1 for a point on no curve)."""
    nb = -np.ones((NUM_LANDMARKS, 2), dtype=np.int64)
    for name, idx in CURVES.items():
        closed = name in CLOSED_CURVES
        m = len(idx)
        for k, i in enumerate(idx):
            prev_k, next_k = k - 1, k + 1
            if closed:
                prev_k %= m
                next_k %= m
            nb[i, 0] = idx[max(prev_k, 0)]
            nb[i, 1] = idx[min(next_k, m - 1)]
    return nb


CURVE_NEIGHBOURS = curve_neighbours()


def curve_edges() -> list[tuple[int, int]]:
    """Consecutive point pairs along every curve (for drawing and edge heatmaps)."""
    edges = []
    for name, idx in CURVES.items():
        edges += list(zip(idx[:-1], idx[1:]))
        if name in CLOSED_CURVES:
            edges.append((idx[-1], idx[0]))
    return edges


def tangents(points: np.ndarray) -> np.ndarray:
    """Unit tangent at each landmark of (..., N, 2) points from its curve neighbours; zero vector
    for points on no curve (isotropic)."""
    nb = CURVE_NEIGHBOURS
    t = points[..., nb[:, 1], :] - points[..., nb[:, 0], :]
    t[..., nb[:, 0] < 0, :] = 0.0
    norm = np.linalg.norm(t, axis=-1, keepdims=True)
    return np.where(norm > 1e-9, t / np.maximum(norm, 1e-9), 0.0)


def landmark_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) bounding box of (N, 2) points."""
    return (float(points[:, 0].min()), float(points[:, 1].min()),
            float(points[:, 0].max()), float(points[:, 1].max()))


def crop_from_box(box, scale: float = CROP_SCALE) -> tuple[float, float, float]:
    """(cx, cy, side) of the square crop around a box, side = scale x larger box side."""
    x0, y0, x1, y1 = box
    return (x0 + x1) / 2.0, (y0 + y1) / 2.0, scale * max(x1 - x0, y1 - y0, 1.0)


def crop_matrix(cx: float, cy: float, side: float, out_size: int = INPUT_SIZE,
                angle_deg: float = 0.0, flip: bool = False) -> np.ndarray:
    """2x3 affine image->crop (pixel centres at integers, as cv2.warpAffine expects):
    u = s R (x - c) + (S - 1) / 2, s = S / side; optional rotation and horizontal flip."""
    s = out_size / side
    a = np.deg2rad(angle_deg)
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * s
    if flip:
        r = np.diag([-1.0, 1.0]) @ r
    half = (out_size - 1) / 2.0
    t = np.array([half, half]) - r @ np.array([cx, cy])
    return np.hstack([r, t[:, None]])


def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine map, in closed form (no LAPACK call: this runs per face per frame)."""
    a, b, c, d = m[0, 0], m[0, 1], m[1, 0], m[1, 1]
    r_inv = np.array([[d, -b], [-c, a]]) / (a * d - b * c)
    return np.hstack([r_inv, (-r_inv @ m[:, 2])[:, None]])


def warp_crop(img: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """cv2.warpAffine of the image->crop matrix m to (size, size), zero border; when the crop shrinks
    the image more than 1/ANTIALIAS_BELOW times, the region is first reduced with INTER_AREA
    (no aliasing for large faces); the matrix still maps original pixels to crop pixels."""
    s = float(np.hypot(m[0, 0], m[1, 0]))
    if s >= ANTIALIAS_BELOW:
        return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    h, w = img.shape[:2]
    corners = apply_affine(invert_affine(m), np.array([[-1, -1], [size, -1], [-1, size], [size, size]], float))
    x0, y0 = (max(int(np.floor(v)) - 1, 0) for v in corners.min(0))
    x1, y1 = min(int(np.ceil(corners[:, 0].max())) + 2, w), min(int(np.ceil(corners[:, 1].max())) + 2, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.zeros((size, size, img.shape[2]), img.dtype)
    rw, rh = max(1, round((x1 - x0) * s)), max(1, round((y1 - y0) * s))
    small = cv2.resize(img[y0:y1, x0:x1], (rw, rh), interpolation=cv2.INTER_AREA)
    fx, fy = rw / (x1 - x0), rh / (y1 - y0)
    # small pixel u -> image x = (u + 0.5) / fx - 0.5 + x0 (cv2.resize's pixel-centre convention)
    t = np.array([[1 / fx, 0, 0.5 / fx - 0.5 + x0], [0, 1 / fy, 0.5 / fy - 0.5 + y0]])
    m2 = np.hstack([m[:, :2] @ t[:, :2], (m[:, :2] @ t[:, 2] + m[:, 2])[:, None]])
    return cv2.warpAffine(small, m2, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
