"""faces68 JSON-lines data: loading with clear errors, a validation split by photo, joint
image + landmark augmentation, and pose-based balancing."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from . import camera
from .config import AugmentConfig, DataConfig
from .landmarks import (INPUT_SIZE, MIRROR_PERMUTATION, NUM_LANDMARKS, apply_affine, crop_from_box, crop_matrix,
                        landmark_box, warp_crop)
from .metrics import in_convention


class DataError(ValueError):
    """Malformed data: a bad jsonl line, a wrong landmark count, an unreadable image."""


@dataclass
class Record:
    image: Path | np.ndarray  # file, or the RGB image itself (read_image passes it through)
    landmarks: np.ndarray | None  # (N, 2) float32 pixels of the stored image
    photo: str
    source: str
    weight: float = 1.0


def load_jsonl(path: str | Path, num_landmarks: int = NUM_LANDMARKS, require_landmarks: bool = True) -> list[Record]:
    """Read DIR/SPLIT.jsonl; image paths are relative to the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    records = []
    with path.open() as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{ln}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e.msg})") from e
            if not isinstance(obj, dict) or not isinstance(obj.get("image"), str):
                raise DataError(f"{where}: expected an object with an 'image' path")
            lm = obj.get("landmarks")
            if lm is None:
                if require_landmarks:
                    raise DataError(f"{where}: no 'landmarks'")
                arr = None
            else:
                try:
                    arr = np.asarray(lm, dtype=np.float32)
                except (TypeError, ValueError) as e:
                    raise DataError(f"{where}: landmarks are not numbers") from e
                if arr.shape != (num_landmarks, 2):
                    raise DataError(f"{where}: expected {num_landmarks} landmarks of 2 coordinates, got shape {arr.shape}")
                if not np.isfinite(arr).all():
                    raise DataError(f"{where}: landmarks contain NaN or inf")
            records.append(Record(path.parent / obj["image"], arr, str(obj.get("photo", obj["image"])),
                                  str(obj.get("source", ""))))
    if not records:
        raise DataError(f"{path}: no records")
    return records


def split_by_photo(records: list[Record], val_fraction: float, seed: int = 0) -> tuple[list[Record], list[Record]]:
    """Hold out a validation share of photos (all faces of a photo fall on one side)."""
    photos = sorted({r.photo for r in records})
    rng = np.random.default_rng(seed)
    rng.shuffle(photos)
    n_val = int(round(len(photos) * val_fraction))
    val_photos = set(photos[:n_val])
    return [r for r in records if r.photo not in val_photos], [r for r in records if r.photo in val_photos]


def mapped_convention(records: list[Record], offsets_file: str | Path) -> list[Record]:
    """Records whose labels follow another annotation convention, mapped onto the one a model was
    trained in: each face's points moved by -d R^T o_i (core.metrics.in_convention with -o), o the
    (N, 2) "offsets" of `offsets_file` (JSON; benchmarks/unseen.py --convention fits them)."""
    try:
        o = np.asarray(json.loads(Path(offsets_file).read_text())["offsets"], np.float64)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{offsets_file}: not a convention-offsets file ({e})") from e
    if not records:
        return records
    if o.shape != records[0].landmarks.shape:
        raise DataError(f"{offsets_file}: offsets {o.shape} do not match the labels {records[0].landmarks.shape}")
    moved = in_convention(np.stack([r.landmarks for r in records]), -o).astype(np.float32)
    return [replace(r, landmarks=m) for r, m in zip(records, moved)]


def train_val_split(dc: DataConfig, root: str | Path | None = None) -> tuple[list[Record], list[Record]]:
    """The training and validation records of a data config: validation is held out from
    dc.train_split by photo (dc.val_fraction, dc.split_seed); `root` overrides dc.root."""
    records = load_jsonl(Path(root or dc.root) / f"{dc.train_split}.jsonl")
    return split_by_photo(records, dc.val_fraction, dc.split_seed)


def read_image(path: str | Path | np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3); raises DataError for a missing or undecodable file. An image already in
    memory (records built from generated or rescaled photos) is returned as it is."""
    if isinstance(path, np.ndarray):
        return path
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"cannot read image: {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def canonical_crop(points: np.ndarray, out_size: int = INPUT_SIZE) -> np.ndarray:
    """2x3 image->crop matrix of the default protocol (square around the landmark box)."""
    return crop_matrix(*crop_from_box(landmark_box(points)), out_size=out_size)


def normalized_shapes(records: list[Record], out_size: int = INPUT_SIZE) -> np.ndarray:
    """(S, N, 2) landmarks in canonical-crop units [0, 1]."""
    return np.stack([apply_affine(canonical_crop(r.landmarks, out_size), r.landmarks) / out_size for r in records])


def pose_balance_weights(shapes: np.ndarray, bins: int = 9) -> np.ndarray:
    """Sampling weights from the first shape-PCA component, split into `bins` equal-width bins:
    w = 1 / count(bin), normalised to mean 1."""
    x = shapes.reshape(len(shapes), -1)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    proj = x @ vt[0]
    edges = np.linspace(proj.min(), proj.max() + 1e-9, bins + 1)
    idx = np.clip(np.digitize(proj, edges) - 1, 0, bins - 1)
    counts = np.bincount(idx, minlength=bins)
    w = 1.0 / counts[idx]
    return w / w.mean()


def _random_occlusion(img: np.ndarray, rng: np.random.Generator, area=(0.1, 0.3)):
    h, w = img.shape[:2]
    a = rng.uniform(*area) * h * w
    aspect = math.exp(rng.uniform(-0.7, 0.7))
    bh, bw = int(min(h, math.sqrt(a * aspect))), int(min(w, math.sqrt(a / aspect)))
    y, x = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
    if rng.random() < 0.5:
        img[y:y + bh, x:x + bw] = rng.integers(0, 256, size=3, dtype=np.uint8)
    else:
        img[y:y + bh, x:x + bw] = rng.integers(0, 256, size=(bh, bw, 3), dtype=np.uint8)
    return img


def _face_occlusion(img: np.ndarray, pts: np.ndarray, rng: np.random.Generator, axes=(0.1, 0.4)) -> np.ndarray:
    """An occluder over the face as real ones fall (hands, phones, hair): an ellipse or rectangle centred
    anywhere in the landmark box (`pts`, crop pixels), semi-axes `axes` x the box's larger side, any
    angle, filled with a solid colour, noise, or the crop's own texture from a shifted position."""
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    side = max(x1 - x0, y1 - y0)
    centre = np.array([x0 + (x1 - x0) * rng.random(), y0 + (y1 - y0) * rng.random()])
    half = rng.uniform(*axes, size=2) * side
    angle = rng.uniform(0, 180)
    mask = np.zeros(img.shape[:2], np.uint8)
    if rng.random() < 0.5:
        cv2.ellipse(mask, (int(round(centre[0])), int(round(centre[1]))),
                    (int(round(half[0])), int(round(half[1]))), angle, 0, 360, 1, -1)
    else:
        corners = cv2.boxPoints(((float(centre[0]), float(centre[1])), (2 * float(half[0]), 2 * float(half[1])), angle))
        cv2.fillPoly(mask, [np.round(corners).astype(np.int32)], 1)
    m = mask.astype(bool)
    out = img.copy()
    fill = rng.integers(3)
    if fill == 0:
        out[m] = rng.integers(0, 256, size=3, dtype=np.uint8)
    elif fill == 1:
        out[m] = rng.integers(0, 256, size=(int(m.sum()), 3), dtype=np.uint8)
    else:
        h, w = img.shape[:2]
        dy, dx = (int(rng.integers(n // 4, n - n // 4 + 1)) for n in (h, w))
        out[m] = np.roll(img, (dy, dx), axis=(0, 1))[m]
    return out


def _color_jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    f = img.astype(np.float32)
    f = f * rng.uniform(0.6, 1.4) + rng.uniform(-30, 30)  # contrast-ish gain and brightness
    gray = f.mean(2, keepdims=True)
    f = gray + (f - gray) * rng.uniform(0.5, 1.5)  # saturation
    if rng.random() < 0.1:
        f = np.repeat(f.mean(2, keepdims=True), 3, 2)
    return np.clip(f, 0, 255).astype(np.uint8)


def motion_blur_kernel(length: int, angle_deg: float) -> np.ndarray:
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle_deg, 1.0)
    k = cv2.warpAffine(k, rot, (length, length))
    return k / max(k.sum(), 1e-6)


def _low_resolution(img: np.ndarray, rng: np.random.Generator, min_side: int) -> np.ndarray:
    """The crop as a smaller source would give it: shrunk (INTER_AREA) to a side s, log-uniform in
    [min_side, S), then enlarged back to S x S bilinearly, as core.landmarks.warp_crop enlarges."""
    size = img.shape[0]
    if min_side >= size:
        return img
    s = int(round(math.exp(rng.uniform(math.log(min_side), math.log(size)))))
    small = cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)


def _blur(img: np.ndarray, rng: np.random.Generator, length: float = 0.0) -> np.ndarray:
    """Gaussian (sigma 0.5-2 px) or motion blur: a line of 3-11 px, or up to `length` x the crop side."""
    if rng.random() < 0.5:
        s = rng.uniform(0.5, 2.0)
        return cv2.GaussianBlur(img, (0, 0), s)
    longest = max(11, int(round(length * img.shape[0])))
    return cv2.filter2D(img, -1, motion_blur_kernel(int(rng.integers(3, longest + 1)), rng.uniform(0, 180)))


class FaceDataset(Dataset):
    """Yields (image (3,S,S) float in [0,1], landmarks (N,2) in crop units, weight); with uint8=True
    the image stays uint8 in [0, 255] (4x less to pin and copy; the trainer divides on the GPU)."""

    def __init__(self, records: list[Record], input_size: int = INPUT_SIZE, augment: AugmentConfig | None = None,
                 cache: bool = False, seed: int = 0, uint8: bool = False):
        self.records, self.size, self.aug, self.seed, self.uint8 = records, input_size, augment, seed, uint8
        self.epoch = 0
        self._cache = [read_image(r.image) for r in records] if cache else None

    def __len__(self):
        return len(self.records)

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def sample(self, i: int, rng: np.random.Generator | None = None):
        r = self.records[i]
        img = self._cache[i] if self._cache is not None else read_image(r.image)
        cx, cy, side = crop_from_box(landmark_box(r.landmarks))
        angle, flip = 0.0, False
        a = self.aug
        if a is not None:
            side *= 1 + rng.uniform(-a.scale, a.scale)
            cx += rng.uniform(-a.translation, a.translation) * side
            cy += rng.uniform(-a.translation, a.translation) * side
            if rng.random() < a.rotation_prob:
                angle = rng.uniform(-a.rotation, a.rotation)
            flip = rng.random() < a.flip
        m = crop_matrix(cx, cy, side, self.size, angle, flip)
        crop = warp_crop(img, m, self.size)  # the resampling the app's crops get (INTER_AREA for large faces)
        pts = apply_affine(m, r.landmarks)
        if flip:
            pts = pts[MIRROR_PERMUTATION]
        if a is not None:
            if a.lowres and rng.random() < a.lowres:  # no draw when off: earlier runs' streams stay as they were
                crop = _low_resolution(crop, rng, a.lowres_min_side)
            if rng.random() < a.color:
                crop = _color_jitter(crop, rng)
            if rng.random() < a.blur:
                crop = _blur(crop, rng, a.blur_length)
            if rng.random() < a.occlusion:  # the on-face draw only when on: earlier runs' streams unchanged
                if a.occlusion_on_face and rng.random() < a.occlusion_on_face:
                    crop = _face_occlusion(crop, pts, rng)
                else:
                    crop = _random_occlusion(crop.copy(), rng)
            if a.camera and rng.random() < a.camera:  # last: the sensor and the encoder see the occluder too
                crop = camera.degrade_at(crop, rng, camera.TRAINING, a.camera_side)
        return crop, pts.astype(np.float32), m

    def __getitem__(self, i):
        rng = np.random.default_rng((self.seed, self.epoch, i)) if self.aug is not None else None
        crop, pts, _ = self.sample(i, rng)
        x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)
        x = x.contiguous() if self.uint8 else x.float() / 255.0
        return x, torch.from_numpy(pts / self.size), torch.tensor(self.records[i].weight, dtype=torch.float32)
