"""Image-mode detection stage: every face a person sees, with its in-plane angle.

Both mediapipe BlazeFace models always run (the short-range one alone misses crowds: when it
returns anything, even one spurious box, `MediaPipeDetector(model="auto")` never runs the
full-range one); large photos are also cut into overlapping tiles for the full-range model
(its input is 192 px, so a 60 px face in a 1280 px photo is ~9 px to it), keeping from a tile
only faces it holds whole (crosses_cut); a zero-padded copy
lets the short-range model see faces that fill or leave the frame; and the photo rotated by 90,
180 and 270 degrees finds faces turned on their side. Every candidate keeps the roll angle of
its eye keypoints (degrees, image x axis to the subject's right-eye -> left-eye line, y down), so
the crop the model sees can be turned upright (core.image_faces). Candidates of all passes are
merged by NMS on their landmark-box estimates.

Which passes run is a `FinderConfig`; the defaults were chosen by the photo protocol on
photos_afw and validation photos (benchmarks/photos.py; docs/PHOTOS.md)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .detectors import MP_FULL_CALIBRATION, MP_SHORT_CALIBRATION, NMS_IOU, Detection, MediaPipeDetector, nms

ROTATIONS = ("none", "empty", "always")
MP_RIGHT_EYE, MP_LEFT_EYE = 0, 1  # mediapipe keypoints: subject's right eye (image left), left eye


@dataclass
class Candidate(Detection):
    """A Detection with the face's in-plane roll (degrees; 0 = upright, positive = clockwise on screen)."""
    angle: float = 0.0


@dataclass(frozen=True)
class FinderConfig:
    """short / full: run mediapipe's short- / full-range model on the whole photo.
    tile_levels: full-range passes on tiles of side long_side / 2^k, k = 1..tile_levels (50 %
    overlap), for photos whose long side exceeds tile_above px; tiles never go below tile_min px.
    pad: short-range pass on a copy padded by this share of each side (0 = off).
    rotations: "none", "empty" (90/180/270 degree passes only when the upright passes find
    nothing) or "always". min_score: mediapipe's min_detection_confidence."""
    short: bool = True
    full: bool = True
    tile_levels: int = 2
    tile_above: int = 480
    tile_min: int = 240
    pad: float = 0.25
    rotations: str = "empty"
    min_score: float = 0.5
    nms_iou: float = NMS_IOU

    def __post_init__(self):
        if self.rotations not in ROTATIONS:
            raise ValueError(f"rotations must be one of {ROTATIONS}, got {self.rotations!r}")
        if self.tile_levels < 0 or not 0 <= self.pad <= 2 or not 0 < self.min_score < 1:
            raise ValueError("tile_levels >= 0, 0 <= pad <= 2 and 0 < min_score < 1 required")

    @classmethod
    def from_dict(cls, d: dict) -> "FinderConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        bad = set(d) - known
        if bad:
            raise ValueError(f"unknown FinderConfig keys {sorted(bad)}; known: {sorted(known)}")
        return cls(**d)


def rot90_matrix(k: int, w: int, h: int) -> np.ndarray:
    """2x3 affine mapping pixels of np.rot90(img, k) (img w x h) back to img pixels."""
    k %= 4
    if k == 0:
        return np.array([[1.0, 0, 0], [0, 1.0, 0]])
    if k == 1:  # rotated (u, v) -> (w - 1 - v, u)
        return np.array([[0, -1.0, w - 1], [1.0, 0, 0]])
    if k == 2:
        return np.array([[-1.0, 0, w - 1], [0, -1.0, h - 1]])
    return np.array([[0, 1.0, 0], [-1.0, 0, h - 1]])  # k == 3: (u, v) -> (v, h - 1 - u)


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def tiles(w: int, h: int, side: int) -> list[tuple[int, int, int, int]]:
    """Square tiles (x0, y0, x1, y1) of `side` px covering a w x h image with 50 % overlap."""
    def starts(n):
        if n <= side:
            return [0]
        k = int(np.ceil((n - side) / (side / 2))) + 1
        return [int(round(v)) for v in np.linspace(0, n - side, k)]
    return [(x, y, min(x + side, w), min(y + side, h)) for y in starts(h) for x in starts(w)]


def crosses_cut(raw: np.ndarray, w: int, h: int, cut) -> bool:
    """True when the raw box (x0, y0, x1, y1, tile pixels) reaches past a side of the w x h tile
    that `cut` (left, top, right, bottom) marks as internal. Such a box is part of a face the tile
    cut off: fed to the model it converges on a distorted face, sometimes more confidently than the
    whole face found by another pass. Nothing is lost by dropping it: with 50 % overlap a face at
    most half a tile wide lies wholly inside some tile of the same level, and a larger one is the
    coarser level's (or the whole-photo passes') to find."""
    left, top, right, bottom = cut
    return bool((left and raw[0] < 0) or (top and raw[1] < 0) or (right and raw[2] > w - 1)
                or (bottom and raw[3] > h - 1))


class FaceFinder:
    """Detector (`detect(rgb) -> list[Candidate]`) running the passes of a FinderConfig on
    mediapipe's two models. Boxes are landmark-box estimates (core.detectors calibration applied
    in the pass's own frame); `angle` is the roll from the eye keypoints."""

    def __init__(self, config: FinderConfig | dict | None = None, mediapipe: MediaPipeDetector | None = None):
        self.config = (config if isinstance(config, FinderConfig)
                       else FinderConfig.from_dict(config or {}))
        self.mp = mediapipe or MediaPipeDetector("auto", min_score=self.config.min_score)

    def _raw(self, rgb: np.ndarray, selection: int) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """(raw box, score, eyes (2, 2): subject's right, left) in rgb pixels, one mediapipe model."""
        from .images import fit_within

        h, w = rgb.shape[:2]
        small, _ = fit_within(rgb, self.mp.max_side)
        with self.mp._lock:
            res = self.mp._graph(selection).process(np.ascontiguousarray(small))
        out = []
        for d in res.detections or []:
            b = d.location_data.relative_bounding_box
            if b.width <= 0 or b.height <= 0:
                continue
            box = np.array([b.xmin * w - 0.5, b.ymin * h - 0.5, (b.xmin + b.width) * w - 0.5,
                            (b.ymin + b.height) * h - 0.5], dtype=np.float64)
            kp = d.location_data.relative_keypoints
            if len(kp) > MP_LEFT_EYE:
                eyes = np.array([[kp[i].x * w - 0.5, kp[i].y * h - 0.5] for i in (MP_RIGHT_EYE, MP_LEFT_EYE)])
            else:
                eyes = np.array([[box[0], box[1]], [box[2], box[1]]])
            out.append((box, float(d.score[0]), eyes))
        return out

    def _pass(self, rgb, selection: int, back: np.ndarray, source: str, cut=None) -> list[Candidate]:
        """Candidates of one model on `rgb`, mapped to the photo by the 2x3 affine `back`.
        cut: (left, top, right, bottom) booleans, the sides of `rgb` that are internal tile edges:
        a raw box crossing one is a face cut by the tile and is dropped (see crosses_cut)."""
        cal = MP_SHORT_CALIBRATION if selection == 0 else MP_FULL_CALIBRATION
        out = []
        for raw, score, eyes in self._raw(rgb, selection):
            if cut is not None and crosses_cut(raw, rgb.shape[1], rgb.shape[0], cut):
                continue
            lb = cal.apply(raw)
            corners = _apply(back, np.array([[lb[0], lb[1]], [lb[2], lb[1]], [lb[0], lb[3]], [lb[2], lb[3]]]))
            rc = _apply(back, np.array([[raw[0], raw[1]], [raw[2], raw[3]]]))
            e = _apply(back, eyes)
            d = e[1] - e[0]
            angle = float(np.degrees(np.arctan2(d[1], d[0]))) if np.hypot(*d) > 1e-6 else 0.0
            out.append(Candidate(np.r_[corners.min(0), corners.max(0)], score, np.r_[rc.min(0), rc.max(0)],
                                 source, None, angle))
        return out

    def _upright(self, rgb) -> list[Candidate]:
        c, (h, w) = self.config, rgb.shape[:2]
        ident = np.array([[1.0, 0, 0], [0, 1.0, 0]])
        out = []
        if c.short:
            out += self._pass(rgb, 0, ident, "mediapipe_short")
        if c.full:
            out += self._pass(rgb, 1, ident, "mediapipe_full")
        if c.pad > 0:
            p = int(round(c.pad * max(h, w)))
            padded = np.pad(rgb, ((p, p), (p, p), (0, 0)))
            out += self._pass(padded, 0, np.array([[1.0, 0, -p], [0, 1.0, -p]]), "mediapipe_short_padded")
        long_side = max(h, w)
        if long_side > c.tile_above:
            for k in range(1, c.tile_levels + 1):
                side = int(np.ceil(long_side / 2 ** k))
                if side < c.tile_min:
                    break
                for x0, y0, x1, y1 in tiles(w, h, side):
                    out += self._pass(rgb[y0:y1, x0:x1], 1, np.array([[1.0, 0, x0], [0, 1.0, y0]]), f"mediapipe_tile{k}",
                                      cut=(x0 > 0, y0 > 0, x1 < w, y1 < h))
        return out

    def detect(self, rgb: np.ndarray) -> list[Candidate]:
        """All candidates, NMS-merged (highest score first)."""
        c = self.config
        cands = self._upright(rgb)
        if c.rotations == "always" or (c.rotations == "empty" and not cands):
            h, w = rgb.shape[:2]
            for k in (1, 2, 3):
                r = np.ascontiguousarray(np.rot90(rgb, k))
                back = rot90_matrix(k, w, h)
                for sel, name in ((0, "short"), (1, "full")):
                    cands += self._pass(r, sel, back, f"mediapipe_{name}_rot{90 * k}")
        return nms(cands, c.nms_iou)

    def close(self):
        self.mp.close()
