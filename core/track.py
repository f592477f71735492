"""Per-face track state of video mode (core.tracking.VideoTracker): the module constants,
TrackingConfig, Track (motion-predicted boxes and crops) and the crop geometry ([cx, cy, side, angle]
crops, turned upright by a face's roll). The page's port is app/static/browser_webcam/track.js."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .image_faces import roll_deg, upright_box
from .landmarks import CROP_SCALE, crop_from_box
from .smoothing import DEFAULT_FPS, FaceSmoother

MIN_FACE_SIDE = 8.0  # px: a landmark box smaller than this is a lost track
TRACK_MIN_INSIDE = 0.3  # share of a landmark box that must lie inside the frame
MATCH_IOU = 0.3  # a detection continues a track when it overlaps the track's predicted box this much
KEEP_IOU = 0.5  # ... and a healthy track keeps its own (landmark) box above this overlap
DUPLICATE_IOU = 0.6  # two tracks overlapping more than this follow one face
OVERLAP_IOU = 0.1  # tracks overlapping more than this may pull each other: a track jumping then is dropped
MAX_JUMP = 0.08  # landmark-box sides: landmarks this far from the motion prediction = jumped
MAX_DRIFT = 0.2  # landmark-box sides: ... or this far from the path remembered before the overlap
VELOCITY_MEMORY = 0.4  # v <- (1 - m) v_measured + m v
MAX_PREDICTED_SHIFT = 0.5  # landmark-box sides: cap on the motion prediction per frame
MAX_PREDICTED_ZOOM = 0.3  # |log side change| cap on the motion prediction per frame
REMEMBER_MAX_SHIFT = 3.0  # landmark-box sides: cap on a remembered (lost) track's predicted path
ANCHOR_LAG_S = 0.2  # s: a lost track is remembered from its clear frame this long before its last one
PATH_S = 0.7  # s of clear frames kept per track: the anchor, and its motion measured over the frames before it
REMEMBER_MAX_ZOOM = 0.2  # |d log side / dt| cap (per s) on a remembered track's predicted path
PULL_S = 0.5  # s: a track jumping onto the path of a face lost this recently is dropped (pulled onto it)
PULL_MAX_DT = 0.15  # s: ... when the previous frame is this recent (slower frames jump by their own motion)
INHERIT_SPEED = 6.0  # landmark-box sides per s: a track started this far from one lost on the same frame takes its id
INHERIT_MAX_SHIFT = 2.0  # landmark-box sides: ... at most this far (3 fps: a face moving sideways leaves its crop)
INHERIT_MAX_ZOOM = 0.4  # |log side ratio| of the two at most
SIGMA_MEMORY = 0.8  # running uncertainty level: s <- m s + (1 - m) sigma (healthy frames only)


@dataclass(frozen=True)
class TrackingConfig:
    """Video-mode parameters (see the module docstring). Build from a mapping with
    core.config.from_dict(TrackingConfig, {...}) to reject unknown keys."""
    redetect_every: int = 10  # frames
    redetect_s: float = 1.0  # seconds
    max_sigma: float = 0.08  # crop units
    sigma_jump: float = 2.5
    sigma_floor: float = 0.01  # crop units: running level used at least this large
    edge: float = 0.02  # crop units: landmark box this close to the crop border = face leaves the crop
    max_shift: float = 0.06  # crop units: landmark-box centre this far from the crop centre = crop off
    max_scale: float = 0.15  # |log(landmark side / expected side)| above this = crop off
    predict_motion: bool = True
    smooth: bool = True
    smooth_gap_s: float = 1.0
    lost_keep_s: float = 2.0
    revive_iou: float = 0.1  # a detection overlapping a remembered track's predicted box this much revives it
    max_misses: int = 2  # scheduled detections in a row that miss a track before it is dropped
    fps: float = DEFAULT_FPS  # frame rate assumed when frames come without timestamps

    def __post_init__(self):
        self.validate()

    def validate(self):
        if self.redetect_every < 1 or self.max_misses < 1:
            raise ValueError("redetect_every and max_misses must be >= 1")
        for k in ("redetect_s", "max_sigma", "sigma_jump", "edge", "max_shift", "max_scale", "smooth_gap_s", "fps"):
            if not getattr(self, k) > 0:
                raise ValueError(f"TrackingConfig.{k} must be > 0, got {getattr(self, k)!r}")
        if self.sigma_floor < 0 or self.lost_keep_s < 0 or not 0 <= self.revive_iou <= 1:
            raise ValueError("sigma_floor, lost_keep_s must be >= 0 and 0 <= revive_iou <= 1")


@dataclass
class Track:
    id: int
    box: np.ndarray  # landmark box (x0, y0, x1, y1) at time t
    score: float
    t: float
    landmarks: np.ndarray | None = None  # last raw (unsmoothed) landmarks
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # px / s of the box centre
    zoom_rate: float = 0.0  # d log(side) / dt
    sigma_level: float | None = None
    misses: int = 0
    from_detection: bool = True  # box came from a detector: two passes, motion unknown
    restart: bool = True  # smoothing starts over on the next output
    revived: bool = False  # taken up again from its remembered path on this frame (its motion was reset)
    smoother: FaceSmoother | None = None
    path: list = field(default_factory=list)  # [(t, landmark box)] of its clear frames (overlapping no other track)
    roll: float = 0.0  # degrees, eye line of the last landmarks: the crop is turned upright by it
    left_box: np.ndarray | None = None  # lost while its motion took it over the frame's edge: where it left

    def remember(self, box: np.ndarray, t: float) -> None:
        """Keep a clear frame's landmark box on the path (the last PATH_S seconds of them)."""
        self.path = [p for p in self.path if t - p[0] <= PATH_S] + [(t, np.asarray(box, np.float64).copy())]

    @property
    def anchor(self) -> tuple | None:
        """(box, velocity, zoom rate, t): the last trustworthy state of a track, from its path. The clear
        frame ANCHOR_LAG_S before the last one (else the oldest kept), because a face being covered slides
        and shrinks for a few frames before its track overlaps the other or is lost; its motion is the
        mean over the kept frames before it (else up to the last), so it does not depend on the frame rate."""
        if not self.path:
            return None
        ts = [p[0] for p in self.path]
        a = max((i for i, u in enumerate(ts) if u <= ts[-1] - ANCHOR_LAG_S), default=0)
        b = 0 if a > 0 else len(ts) - 1
        (t0, b0), (t1, b1) = sorted([self.path[a], self.path[b]], key=lambda p: p[0])
        if t1 > t0:
            v = ((b1[:2] + b1[2:]) - (b0[:2] + b0[2:])) / 2 / (t1 - t0)
            z = float(np.clip(math.log(_side_box(b1) / _side_box(b0)) / (t1 - t0), -REMEMBER_MAX_ZOOM, REMEMBER_MAX_ZOOM))
        else:
            v, z = np.zeros(2), 0.0
        return self.path[a][1], v, z, self.path[a][0]

    def remembered_box(self, t: float) -> np.ndarray:
        """Predicted box from the anchor (a lost track's last trustworthy state); a face that left over the
        frame's edge is expected back where it left (left_box)."""
        if self.left_box is not None:
            return self.left_box.copy()
        if not self.path:
            return self.predicted_box(t)
        box, v, z, t0 = self.anchor
        return Track(self.id, box, self.score, t0, velocity=v, zoom_rate=z).predicted_box(t, max_shift=REMEMBER_MAX_SHIFT)

    def _motion(self, t: float, motion: bool, side: float, max_shift: float) -> tuple[np.ndarray, float]:
        """(centre shift px, zoom factor) predicted from t to now, the shift capped at max_shift x side."""
        dt = max(0.0, t - self.t)
        shift = self.velocity * dt if motion else np.zeros(2)
        n = float(np.hypot(*shift))
        if n > max_shift * side:
            shift = shift * (max_shift * side / n)
        z = math.exp(float(np.clip(self.zoom_rate * dt, -MAX_PREDICTED_ZOOM, MAX_PREDICTED_ZOOM))) if motion else 1.0
        return shift, z

    def predicted_box(self, t: float, motion: bool = True, max_shift: float = MAX_PREDICTED_SHIFT) -> np.ndarray:
        x0, y0, x1, y1 = self.box
        shift, z = self._motion(t, motion, max(x1 - x0, y1 - y0, 1.0), max_shift)
        cx, cy = (x0 + x1) / 2 + shift[0], (y0 + y1) / 2 + shift[1]
        hw, hh = (x1 - x0) * z / 2, (y1 - y0) * z / 2
        return np.array([cx - hw, cy - hh, cx + hw, cy + hh])

    def predicted_crop(self, t: float, motion: bool = True) -> np.ndarray:
        """[cx, cy, side, angle] of the crop for time t: the upright square around the last
        landmarks (box_crop of the predicted box before any), moved like predicted_box."""
        if self.landmarks is None:
            return box_crop(self.predicted_box(t, motion))
        cx, cy, side = upright_box(self.landmarks, self.roll)
        shift, z = self._motion(t, motion, side, MAX_PREDICTED_SHIFT)
        return np.array([cx + shift[0], cy + shift[1], CROP_SCALE * side * z, self.roll])


def landmark_box(pts: np.ndarray) -> np.ndarray:
    return np.r_[pts.min(0), pts.max(0)].astype(np.float64)


def box_crop(box) -> np.ndarray:
    """[cx, cy, side, angle]: the axis-aligned training-convention crop around a landmark-box estimate."""
    return np.array([*crop_from_box(box), 0.0])


def landmark_crop(pts: np.ndarray) -> np.ndarray:
    """[cx, cy, side, angle]: the training-convention square around landmarks, turned upright by their roll."""
    a = roll_deg(pts)
    cx, cy, side = upright_box(pts, a)
    return np.array([cx, cy, CROP_SCALE * side, a])


def in_crop(pts: np.ndarray, crop) -> np.ndarray:
    """Landmarks in crop units of crop = [cx, cy, side, angle] ([0, 1] = inside; the crop image is
    the square turned by -angle, as core.landmarks.crop_matrix(cx, cy, side, angle_deg=-angle))."""
    cx, cy, side, angle = crop
    a = math.radians(-angle)
    d = np.asarray(pts, np.float64) - np.array([cx, cy])
    r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return d @ r.T / side + 0.5


def centre_offset(box, ref) -> float:
    """Distance between the centres of landmark boxes `box` and `ref`, in sides of `ref`."""
    return float(np.hypot(*((box[:2] + box[2:]) - (ref[:2] + ref[2:])) / 2)) / _side_box(ref)


def _side(pts) -> float:
    return float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]), 1.0))


def _side_box(b) -> float:
    return float(max(b[2] - b[0], b[3] - b[1], 1.0))


__all__ = ["TrackingConfig", "Track", "in_crop", "box_crop", "landmark_crop", "landmark_box"]
