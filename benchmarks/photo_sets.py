"""Photo sets for choosing the detection stage and the rejection threshold without touching test
data: whole-photo records (core.photos.PhotoRecord, image held in memory) built from the
validation split of train (held out by photo, as core.train does), and seeded no-face images.

- val:        each validation crop (512 px, face ~40 % of it) as a photo
- val_rot90:  the same, turned 90 degrees counter-clockwise (landmarks mapped exactly)
- val_tight:  a square of 1.05 x the landmark box around each face: the face fills the frame
- val_mosaic: collages of 20 validation crops (4 x 5 grid of 256 px cells, 1280 x 1024)
- val_small:  one validation face shrunk to a ~40 px landmark box in a 3000 x 2000 textured photo
- noface:     seeded images with no face (noise, blurred-noise textures, gradients, stripes,
              checkerboards, random shapes and ellipses), mixed sizes."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.config import load_config  # noqa: E402
from core.data import read_image, train_val_split  # noqa: E402
from core.photos import PhotoRecord  # noqa: E402

VAL_SETS = ("val", "val_rot90", "val_tight", "val_mosaic", "val_small")
MOSAIC_GRID = (4, 5)  # rows, columns
MOSAIC_CELL = 256
SMALL_PHOTO = (3000, 2000)
SMALL_FACE_PX = 40  # landmark-box side of the face in val_small


def val_records(data: Path):
    _, val = train_val_split(load_config(ROOT / "configs" / "sdfl_graph.yaml").data, data)
    return val


def val_photos(data: Path, kind: str, limit: int | None = None, seed: int = 0) -> list[PhotoRecord]:
    if kind not in VAL_SETS:
        raise ValueError(f"kind must be one of {VAL_SETS}")
    recs = val_records(data)[:limit] if limit else val_records(data)
    out = []
    if kind == "val_mosaic":
        rows, cols = MOSAIC_GRID
        n = rows * cols
        for k in range(0, len(recs) - n + 1, n):
            canvas = np.zeros((rows * MOSAIC_CELL, cols * MOSAIC_CELL, 3), np.uint8)
            faces = []
            for q, r in enumerate(recs[k:k + n]):
                img = read_image(r.image)
                s = MOSAIC_CELL / img.shape[1]
                y, x = divmod(q, cols)
                canvas[y * MOSAIC_CELL:(y + 1) * MOSAIC_CELL, x * MOSAIC_CELL:(x + 1) * MOSAIC_CELL] = \
                    cv2.resize(img, (MOSAIC_CELL, MOSAIC_CELL), interpolation=cv2.INTER_AREA)
                faces.append((r.landmarks + 0.5) * s - 0.5 + [x * MOSAIC_CELL, y * MOSAIC_CELL])
            out.append(PhotoRecord(canvas, f"mosaic{k // n}", "val", faces, [str(i) for i in range(n)]))
        return out
    rng = np.random.default_rng(seed)
    for r in recs:
        img, pts = read_image(r.image), np.asarray(r.landmarks, np.float64)
        if kind == "val_rot90":
            w = img.shape[1]
            img = np.ascontiguousarray(np.rot90(img, 1))
            pts = np.c_[pts[:, 1], w - 1 - pts[:, 0]]  # (x, y) -> (y, w - 1 - x)
        elif kind == "val_tight":
            lo, hi = pts.min(0), pts.max(0)
            side = 1.05 * max(hi - lo)
            c = (lo + hi) / 2
            m = np.array([[1.0, 0, side / 2 - c[0]], [0, 1.0, side / 2 - c[1]]])
            n = int(round(side))
            img = cv2.warpAffine(img, m, (n, n), flags=cv2.INTER_LINEAR)
            pts = pts + m[:, 2]
        elif kind == "val_small":
            W, H = SMALL_PHOTO
            s = SMALL_FACE_PX / max(np.ptp(pts, 0))
            small = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
            bg = cv2.resize(rng.integers(0, 255, (H // 50, W // 50, 3), dtype=np.uint8), (W, H),
                            interpolation=cv2.INTER_CUBIC)
            x0, y0 = int(rng.integers(0, W - small.shape[1])), int(rng.integers(0, H - small.shape[0]))
            bg[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
            img, pts = bg, (pts + 0.5) * s - 0.5 + [x0, y0]
        out.append(PhotoRecord(img, r.photo, r.source, [pts], [r.photo]))
    return out


NOFACE_KINDS = ("uniform_noise", "gaussian_noise", "texture", "gradient", "stripes", "checkerboard", "shapes",
                "ellipses")


def noface_image(kind: str, rng: np.random.Generator) -> np.ndarray:
    """One RGB image of `kind` (NOFACE_KINDS) with no face in it."""
    w, h = (int(v) for v in rng.choice([(640, 480), (480, 640), (800, 800), (1280, 720), (320, 240)]))
    if kind == "uniform_noise":
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if kind == "gaussian_noise":
        return np.clip(rng.normal(128, 50, (h, w, 3)), 0, 255).astype(np.uint8)
    if kind == "texture":
        cell = int(rng.integers(4, 80))
        small = rng.integers(0, 256, (max(2, h // cell), max(2, w // cell), 3), dtype=np.uint8)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        return cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 3)))
    if kind == "gradient":
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        if rng.random() < 0.5:
            a = rng.uniform(0, 2 * np.pi)
            t = (np.cos(a) * x + np.sin(a) * y)
        else:
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            t = np.hypot(x - cx, y - cy)
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        return (c0 + t[..., None] * (c1 - c0)).astype(np.uint8)
    if kind == "stripes":
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        a, period = rng.uniform(0, np.pi), rng.uniform(6, 80)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (np.cos(a) * x + np.sin(a) * y) / period)
        c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        return (c0 + t[..., None] * (c1 - c0)).astype(np.uint8)
    if kind == "checkerboard":
        cell = int(rng.integers(8, 100))
        y, x = np.mgrid[0:h, 0:w]
        t = ((x // cell + y // cell) % 2).astype(np.float32)
        c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        return (c0 + t[..., None] * (c1 - c0)).astype(np.uint8)
    img = np.full((h, w, 3), rng.integers(0, 256, 3), np.uint8)
    for _ in range(int(rng.integers(3, 25))):
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        if kind == "shapes" and rng.random() < 0.5:
            s = int(rng.integers(10, max(11, min(w, h) // 2)))
            cv2.rectangle(img, (cx, cy), (cx + s, cy + int(rng.integers(10, s + 11))), col, -1)
        else:
            ax = (int(rng.integers(5, max(6, w // 4))), int(rng.integers(5, max(6, h // 4))))
            cv2.ellipse(img, (cx, cy), ax, float(rng.uniform(0, 180)), 0, 360, col, -1)
    return img


def noface_photos(n: int = 100, seed: int = 0) -> list[PhotoRecord]:
    """n no-face photos (kinds in turn), seeded."""
    rng = np.random.default_rng(seed)
    return [PhotoRecord(noface_image(NOFACE_KINDS[i % len(NOFACE_KINDS)], rng), f"noface{i}",
                        NOFACE_KINDS[i % len(NOFACE_KINDS)], [], []) for i in range(n)]
