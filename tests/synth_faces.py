"""Synthetic faces for the tests: a hand-made, mirror-symmetric iBUG 68-point template (written
out here, independently of core.landmarks), a drawing of it (ellipse + red dots at the landmarks)
and a small faces68-format split (jsonl + jpgs) in a temporary folder."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

DOT_RGB = (255, 0, 0)  # landmark dots are pure red on a grey/skin background


def face_template() -> np.ndarray:
    """(68, 2) frontal face in unit coordinates, x to the image right, y down; mirror-symmetric
    about x = 0.5 with iBUG semantics (point 36 = outer corner of the eye on image-left)."""
    p = np.zeros((68, 2))
    t = np.linspace(0, np.pi, 17)
    p[0:17] = np.stack([0.5 - 0.36 * np.cos(t), 0.42 + 0.40 * np.sin(t)], 1)  # 0 left ... 8 chin ... 16 right
    bx = np.linspace(0.22, 0.42, 5)
    by = 0.30 - 0.03 * np.sin(np.linspace(0, np.pi, 5))
    p[17:22] = np.stack([bx, by], 1)
    p[22:27] = np.stack([1 - bx[::-1], by[::-1]], 1)
    p[27:31] = np.stack([np.full(4, 0.5), np.linspace(0.38, 0.55, 4)], 1)
    p[31:36] = np.stack([np.linspace(0.42, 0.58, 5), [0.60, 0.61, 0.62, 0.61, 0.60]], 1)
    r, h = 0.07, 0.025
    for base, cx in ((36, 0.33), (42, 0.67)):
        cy = 0.40  # 36: outer, upper-outer, upper-inner, inner, lower-inner, lower-outer; 42: mirrored
        pts = [(cx - r, cy), (cx - r / 2, cy - h), (cx + r / 2, cy - h), (cx + r, cy), (cx + r / 2, cy + h),
               (cx - r / 2, cy + h)]
        p[base:base + 6] = pts
    th = np.r_[np.pi - np.arange(7) * np.pi / 6, -np.arange(1, 6) * np.pi / 6]  # 48 left corner, 51 top, 54 right
    p[48:60] = np.stack([0.5 + 0.15 * np.cos(th), 0.76 - 0.05 * np.sin(th)], 1)
    th = np.r_[np.pi - np.arange(5) * np.pi / 4, -np.arange(1, 4) * np.pi / 4]  # 60 left, 62 top, 64 right
    p[60:68] = np.stack([0.5 + 0.10 * np.cos(th), 0.76 - 0.025 * np.sin(th)], 1)
    return p


# Mirror partners written out by hand (iBUG 68), for checks independent of core.landmarks.
MIRROR_PAIRS = ([(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)] + [(31, 35), (32, 34)]
                + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
                + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)])


def face_points(size: int = 256, angle_deg: float = 0.0, scale: float = 1.0, shift=(0.0, 0.0),
                noise: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Template placed in a size x size image: about 70 % of the image, optionally rotated,
    scaled, shifted (pixels) and jittered (pixels)."""
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = (face_template() - 0.5) @ rot.T * (0.7 * size * scale) + size / 2 + np.asarray(shift)
    if noise:
        pts = pts + (rng or np.random.default_rng(0)).normal(0, noise, pts.shape)
    return pts.astype(np.float32)


def draw_face(points: np.ndarray, size: int = 256, dot_radius: int = 4) -> np.ndarray:
    """RGB uint8 image: grey background, skin ellipse around the landmarks, red landmark dots."""
    img = np.full((size, size, 3), 90, np.uint8)
    c = points.mean(0)
    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    ang = float(np.degrees(np.arctan2(*(points[16] - points[0])[::-1])))
    cv2.ellipse(img, (int(c[0]), int(c[1])), (int((x1 - x0) * 0.6), int((y1 - y0) * 0.6)), ang, 0, 360,
                (200, 170, 140), -1)
    for x, y in points:
        cv2.circle(img, (int(round(x)), int(round(y))), dot_radius, DOT_RGB, -1)
    return img


def write_split(root: Path, n: int = 8, split: str = "train", seed: int = 0, size: int = 256,
                max_angle: float = 0.0, photos: list[str] | None = None, noise: float = 1.0) -> list[dict]:
    """Write root/SPLIT.jsonl and root/images/*.jpg (faces68 format); returns the JSON objects."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    objs = []
    for i in range(n):
        pts = face_points(size, rng.uniform(-max_angle, max_angle), rng.uniform(0.85, 1.05),
                          rng.uniform(-10, 10, 2), noise=noise, rng=rng)
        name = f"images/{split}_{i:03d}.jpg"
        cv2.imwrite(str(root / name), cv2.cvtColor(draw_face(pts, size), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        objs.append({"image": name, "source": "synthetic", "photo": photos[i] if photos else f"p{i}",
                     "landmarks": pts.round(3).tolist()})
    with (root / f"{split}.jsonl").open("w") as f:
        for o in objs:
            f.write(json.dumps(o) + "\n")
    return objs
