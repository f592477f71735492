"""Occluders for the app's occlusion demo: masks placed relative to a face box, and how they are
painted. Pure numpy/cv2 on RGB uint8 images (the input is never modified)."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .overlays import _check_image

def occluder_mask(shape: tuple[int, int], box: Sequence[float], kind: str = "box",
                  rel: Sequence[float] = (0.5, 0.65, 0.6, 0.3)) -> np.ndarray:
    """(H, W) bool mask of an occluder placed relative to a face box: rel = (cx, cy, w, h) in units
    of the box (0..1, centre and size); kind "box" (rectangle) or "ellipse"."""
    h, w = shape
    x0, y0, x1, y1 = (float(v) for v in box)
    bw, bh = x1 - x0, y1 - y0
    cx, cy, rw, rh = (float(v) for v in rel)
    ox, oy = x0 + cx * bw, y0 + cy * bh
    hw, hh = max(rw * bw / 2.0, 0.5), max(rh * bh / 2.0, 0.5)
    mask = np.zeros((h, w), np.uint8)
    if kind == "box":
        cv2.rectangle(mask, (int(round(ox - hw)), int(round(oy - hh))),
                      (int(round(ox + hw)), int(round(oy + hh))), 1, -1)
    elif kind == "ellipse":
        cv2.ellipse(mask, (int(round(ox)), int(round(oy))), (int(round(hw)), int(round(hh))), 0, 0, 360, 1, -1)
    else:
        raise ValueError(f"occluder kind must be 'box' or 'ellipse', got {kind!r}")
    return mask.astype(bool)


def random_occluders(shape: tuple[int, int], box: Sequence[float], seed: int, count: int = 3,
                     size: tuple[float, float] = (0.15, 0.4)) -> np.ndarray:
    """(H, W) bool mask of `count` random rectangles/ellipses inside a face box (reproducible from
    the seed)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    for _ in range(max(0, int(count))):
        kind = "box" if rng.random() < 0.5 else "ellipse"
        rel = (rng.uniform(0.15, 0.85), rng.uniform(0.2, 0.9), rng.uniform(*size), rng.uniform(*size))
        mask |= occluder_mask(shape, box, kind, rel)
    return mask


def apply_occlusion(image: np.ndarray, mask: np.ndarray, fill: str = "gray", seed: int = 0) -> np.ndarray:
    """Paint the masked pixels: "gray" (mid grey), "black", or "noise" (uniform random colours)."""
    out = _check_image(image)
    mask = np.asarray(mask, bool)
    if mask.shape != out.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match image {out.shape[:2]}")
    if fill == "gray":
        out[mask] = 128
    elif fill == "black":
        out[mask] = 0
    elif fill == "noise":
        rng = np.random.default_rng(seed)
        out[mask] = rng.integers(0, 256, (int(mask.sum()), 3), dtype=np.uint8)
    else:
        raise ValueError(f"fill must be 'gray', 'black' or 'noise', got {fill!r}")
    return out
