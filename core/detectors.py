"""Face detectors behind one small interface, and the calibration from a detector's box to the
landmark box the model's crop convention is defined on.

Every detector returns `Detection`s whose `box` is the *estimated landmark box* (the bounding box
of the 68 points, what core.landmarks.crop_from_box expects); the detector's own box is kept in
`raw_box`. The mapping raw box -> landmark box is fitted on faces68/train by
benchmarks/calibrate_detector.py (constants below)."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from .images import fit_within

DETECT_MAX_SIDE = 1024  # detectors run on a copy downscaled to at most this side
MP_MIN_SCORE = 0.5  # mediapipe min_detection_confidence
HAAR_MAX_SIDE = 640  # the Haar cascade is slow: smaller working copy
HAAR_MIN_FACE_FRACTION = 0.06  # smallest face side searched, as a share of the smaller image side
HAAR_CASCADE = "haarcascade_frontalface_default.xml"
NMS_IOU = 0.4  # overlapping detections of one face are merged


@dataclass(frozen=True)
class BoxCalibration:
    """Landmark box from a detector box of width w, height h and centre (cx, cy):
    centre (cx + dx w, cy + dy h), size (sw w, sh h)."""
    dx: float = 0.0
    dy: float = 0.0
    sw: float = 1.0
    sh: float = 1.0

    def apply(self, box) -> np.ndarray:
        x0, y0, x1, y1 = (float(v) for v in box)
        w, h = x1 - x0, y1 - y0
        cx, cy = (x0 + x1) / 2 + self.dx * w, (y0 + y1) / 2 + self.dy * h
        hw, hh = self.sw * w / 2, self.sh * h / 2
        return np.array([cx - hw, cy - hh, cx + hw, cy + hh], dtype=np.float64)


# Fitted by `nice python benchmarks/calibrate_detector.py` on ../shared/data/faces68/train.jsonl
# (1207 faces; medians of the per-face relations, (sw, sh) rescaled so the larger side is unbiased).
# First-pass crop error after calibration, median (p90): centre offset / canonical crop side; and
# |log side ratio|; uncalibrated in brackets:
# mediapipe short range (model_selection=0): 1207/1207 faces matched; centre 0.028 (0.054) [0.041],
#   side 0.048 [0.058]; MAD of (dx, dy, sw, sh) = (0.015, 0.025, 0.050, 0.044)
MP_SHORT_CALIBRATION = BoxCalibration(dx=-0.0049, dy=0.0433, sw=0.9629, sh=0.9330)
# mediapipe full range (model_selection=1): 1178/1207 matched; centre 0.054 (0.112) [0.092], side 0.050 [0.100]
MP_FULL_CALIBRATION = BoxCalibration(dx=0.0015, dy=0.0827, sw=0.9080, sh=0.8836)
# OpenCV Haar frontalface_default: 1093/1207 matched; centre 0.057 (0.121) [0.141], side 0.057 [0.154]
HAAR_CALIBRATION = BoxCalibration(dx=0.0020, dy=0.1396, sw=0.8605, sh=0.8316)


@dataclass
class Detection:
    box: np.ndarray  # (4,) x0, y0, x1, y1: estimated landmark box, image pixels (centres at integers)
    score: float
    raw_box: np.ndarray | None = None  # the detector's own box
    source: str = ""  # "mediapipe_short", "mediapipe_full", "haar", "track", "user"
    track_id: int | None = None


@runtime_checkable
class Detector(Protocol):
    def detect(self, rgb: np.ndarray) -> list[Detection]: ...


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms(dets: list, iou: float = NMS_IOU) -> list:
    """Highest score first; drop detections (anything with .box and .score, e.g. Detection or
    face_finder.Candidate) overlapping a kept one by more than `iou`."""
    kept: list[Detection] = []
    for d in sorted(dets, key=lambda d: -d.score):
        if all(box_iou(d.box, k.box) <= iou for k in kept):
            kept.append(d)
    return kept


class MediaPipeDetector:
    """MediaPipe BlazeFace (bundled with mediapipe 0.10.21). Rule for `model="auto"`: run the
    short-range model (faces within ~2 m, i.e. larger than ~1/5 of the image); when it finds
    nothing, run the full-range model (small and distant faces). `model="both"` (video mode's):
    both models on every call, their calibrated boxes merged by NMS on score, so a face half
    hidden behind another is found while the short-range model finds the other. Thread-safe."""

    MODELS = ("auto", "both", "short", "full")

    def __init__(self, model: str = "auto", min_score: float = MP_MIN_SCORE, max_side: int = DETECT_MAX_SIDE):
        if model not in self.MODELS:
            raise ValueError(f"model must be one of {self.MODELS}, got {model!r}")
        import mediapipe as mp  # heavy import, only when a detector is built

        self._fd = mp.solutions.face_detection
        self.model, self.min_score, self.max_side = model, min_score, max_side
        self._graphs: dict[int, object] = {}
        self._lock = threading.Lock()

    def _graph(self, selection: int):
        if selection not in self._graphs:
            self._graphs[selection] = self._fd.FaceDetection(model_selection=selection,
                                                             min_detection_confidence=self.min_score)
        return self._graphs[selection]

    def detect_raw(self, rgb: np.ndarray, selection: int) -> list[tuple[np.ndarray, float]]:
        """(raw box in rgb pixels, score) of one mediapipe model (0 short range, 1 full range)."""
        h, w = rgb.shape[:2]
        small, _ = fit_within(rgb, self.max_side)
        with self._lock:
            res = self._graph(selection).process(np.ascontiguousarray(small))
        out = []
        for d in res.detections or []:
            b = d.location_data.relative_bounding_box
            # relative [0, 1] spans the image edges; pixel centres at integers -> x = rel * W - 0.5
            box = np.array([b.xmin * w - 0.5, b.ymin * h - 0.5, (b.xmin + b.width) * w - 0.5,
                            (b.ymin + b.height) * h - 0.5], dtype=np.float64)
            if b.width > 0 and b.height > 0:
                out.append((box, float(d.score[0])))
        return out

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        order = {"auto": (0, 1), "both": (0, 1), "short": (0,), "full": (1,)}[self.model]
        found: list[Detection] = []
        for sel in order:
            cal, name = ((MP_SHORT_CALIBRATION, "mediapipe_short") if sel == 0
                         else (MP_FULL_CALIBRATION, "mediapipe_full"))
            found += [Detection(cal.apply(b), s, b, name) for b, s in self.detect_raw(rgb, sel)]
            if found and self.model == "auto":
                break
        return nms(found)

    def close(self):
        with self._lock:
            for g in self._graphs.values():
                g.close()
            self._graphs.clear()


class HaarDetector:
    """OpenCV's bundled Haar frontal-face cascade (no extra files; frontal faces only). The score
    is a squashed cascade level weight, not a probability."""

    def __init__(self, cascade: str = HAAR_CASCADE, max_side: int = HAAR_MAX_SIDE,
                 min_face_fraction: float = HAAR_MIN_FACE_FRACTION):
        path = cv2.data.haarcascades + cascade
        self._clf = cv2.CascadeClassifier(path)
        if self._clf.empty():
            raise ValueError(f"cannot load Haar cascade {path}")
        self.max_side, self.min_face_fraction = max_side, min_face_fraction
        self._lock = threading.Lock()

    def detect_raw(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        small, s = fit_within(rgb, self.max_side)
        f = 1.0 / s  # original pixels per working pixel
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        m = max(12, int(self.min_face_fraction * min(gray.shape)))
        with self._lock:
            rects, _, weights = self._clf.detectMultiScale3(gray, scaleFactor=1.1, minNeighbors=5, minSize=(m, m),
                                                            outputRejectLevels=True)
        out = []
        for (x, y, w, h), wt in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1)):
            box = np.array([(x + 0.5) * f - 0.5, (y + 0.5) * f - 0.5, (x + w + 0.5) * f - 0.5, (y + h + 0.5) * f - 0.5])
            out.append((box, float(1.0 / (1.0 + np.exp(-wt)))))
        return out

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        return nms([Detection(HAAR_CALIBRATION.apply(b), s, b, "haar") for b, s in self.detect_raw(rgb)])
