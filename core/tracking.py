"""Video tracking behind FaceAligner(video=True): crops from the previous frame's landmarks, moved
by the face's own motion, and a tracker that knows when it has lost the face.

Per frame (time t, seconds; real timestamps, or 1 / fps steps):
  1. predicted crop of a track = the training-convention square around its last landmarks, turned
     upright by their roll (eye line; core.image_faces.upright_box), centre + v dt, side x exp(r dt)
     (v, r: the face's velocity and log-scale rate, exponentially averaged); its predicted box (for
     matching detections) is the last landmark box moved the same way;
  2. the detector runs on schedule (every `redetect_every` frames or `redetect_s` seconds, the
     sooner), when there is no track, and on the same frame whenever a track looks lost;
  3. one model pass per tracked face (two passes for a face whose box came from the detector: an
     axis-aligned crop of the box, then the upright crop around its landmarks); the crop is *off*
     when the landmark box leaves the crop's centre region (the face moved more than the crop can
     follow: centre offset > max_shift or |log side ratio| > max_scale, in crop units) and is then
     re-cropped once, upright, around the new landmarks;
  4. a track is *lost* when its landmarks are not finite, collapse, leave the frame, touch the
     crop border (landmark box within `edge` of it), or its uncertainty (median landmark std in
     crop units) exceeds `max_sigma` or jumps above `sigma_jump` x its running level. A lost
     track triggers the detector on this frame (or, when a detection already ran on this frame and
     matched it, reuses that detection: a slow frame where the face left the crop the matched
     track had kept); a detection that continues it restarts it (two passes, smoothing
     restarted); without one it is dropped (no ghost faces);
  5. a dropped track is remembered for `lost_keep_s`, and meanwhile the detector runs on every
     frame: a new detection on its predicted path (held inside the frame: a face that left at an
     edge comes back there) takes its id again (identity kept when a face
     passes behind another or an occluder, found again on the frame it comes back);
  6. One-Euro smoothing with one cutoff per face (core.smoothing.FaceSmoother) on the real interval
     between frames, restarted after a gap longer than `smooth_gap_s` and whenever the track
     restarts from a detection."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .detectors import Detection, box_iou
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
    smoother: FaceSmoother | None = None
    anchor: tuple | None = None  # (box, velocity, zoom_rate, t) of the last frame it overlapped no other track
    roll: float = 0.0  # degrees, eye line of the last landmarks: the crop is turned upright by it

    def remembered_box(self, t: float) -> np.ndarray:
        """Predicted box from the anchor (a lost track's last trustworthy state)."""
        if self.anchor is None:
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


class VideoTracker:
    """Tracks faces across frames. `run(img, crops) -> {"pts", "cov", "adj", "sigma"}` is one batched
    model pass on crops [cx, cy, side, angle] (FaceAligner._run_crops); `detect(img)` returns
    Detections (landmark-box estimates). `step` returns (track, model-output row, landmarks to show)."""

    def __init__(self, run: Callable, detect: Callable, config: TrackingConfig | None = None, max_faces: int = 8):
        self.run, self.detect = run, detect
        self.cfg = config or TrackingConfig()
        self.max_faces = max_faces
        self.reset()

    def reset(self) -> None:
        self.tracks: list[Track] = []
        self.lost: list[Track] = []
        self._next_id = 0
        self._t: float | None = None
        self._frame = 0
        self._last_detect_frame = -(10 ** 9)
        self._last_detect_t = -math.inf
        self._det_boxes: dict[int, np.ndarray] = {}
        self._crops: dict[int, np.ndarray] = {}  # this frame's crop [cx, cy, side, angle] per track
        self._frame_wh: tuple[int, int] = (1, 1)  # this frame's width and height
        self.detector_calls = 0
        self.model_passes = 0

    # -- helpers -----------------------------------------------------------------------------
    def _clock(self, t: float | None) -> float:
        step = 1.0 / self.cfg.fps
        if self._t is None:
            return 0.0 if t is None else float(t)
        if t is None or not float(t) > self._t:
            return self._t + step
        return float(t)

    def _detect(self, img, user) -> list[Detection]:
        if user is not None:
            return list(user)
        self.detector_calls += 1
        return sorted(self.detect(img), key=lambda d: -d.score)[: self.max_faces]

    def _in_frame(self, box: np.ndarray) -> np.ndarray:
        """A remembered box moved so that its centre lies in the frame: a face that left at an edge
        is expected back at that edge, not further along the path it left on."""
        w, h = self._frame_wh
        c = (box[:2] + box[2:]) / 2
        return box + np.tile(np.clip(c, 0, [w - 1, h - 1]) - c, 2)

    def _new_track(self, d: Detection, t: float) -> Track:
        tr = Track(self._next_id, d.box.copy(), d.score, t)
        self._next_id += 1
        return tr

    def _associate(self, dets: list[Detection], t: float, boxes: dict[int, np.ndarray], healthy: set[int]) -> set[int]:
        """Greedy IoU matching of detections to the tracks' predicted boxes; returns matched track ids.
        Unmatched detections revive a remembered track on their path, else start a new one."""
        pairs = sorted(((box_iou(boxes[tr.id], d.box), i, j) for i, tr in enumerate(self.tracks)
                        for j, d in enumerate(dets)), key=lambda p: -p[0])
        used_t, used_d = set(), set()
        for iou, i, j in pairs:
            if iou < MATCH_IOU or i in used_t or j in used_d:
                continue
            used_t.add(i)
            used_d.add(j)
            tr, d = self.tracks[i], dets[j]
            tr.score, tr.misses = d.score, 0
            self._det_boxes[tr.id] = d.box.copy()
            if iou < KEEP_IOU or tr.id not in healthy:
                boxes[tr.id], self._crops[tr.id] = d.box.copy(), box_crop(d.box)
                tr.from_detection = True
        matched = {self.tracks[i].id for i in used_t}
        for d in (dets[j] for j in range(len(dets)) if j not in used_d):
            if len(self.tracks) >= self.max_faces:
                break
            best = max(self.lost, key=lambda r: box_iou(self._in_frame(r.remembered_box(t)), d.box), default=None)
            if best is not None and box_iou(self._in_frame(best.remembered_box(t)), d.box) >= self.cfg.revive_iou:
                self.lost.remove(best)
                tr = best
                tr.score, tr.misses, tr.velocity, tr.zoom_rate = d.score, 0, np.zeros(2), 0.0
            else:
                tr = self._new_track(d, t)
            tr.from_detection, tr.restart = True, True
            self.tracks.append(tr)
            boxes[tr.id], self._crops[tr.id] = d.box.copy(), box_crop(d.box)
            matched.add(tr.id)
        return matched

    def _check(self, tr: Track, pts: np.ndarray, sigma, crop, shape) -> tuple[bool, bool]:
        """(lost, crop_off) for landmarks `pts` predicted on `crop` ([cx, cy, side, angle])."""
        if not np.isfinite(pts).all():
            return True, False
        lb = landmark_box(pts)
        side = max(lb[2] - lb[0], lb[3] - lb[1])
        if side < MIN_FACE_SIDE:
            return True, False
        h, w = shape[:2]
        iw = max(0.0, min(lb[2], w - 1) - max(lb[0], 0))
        ih = max(0.0, min(lb[3], h - 1) - max(lb[1], 0))
        if iw * ih < TRACK_MIN_INSIDE * max((lb[2] - lb[0]) * (lb[3] - lb[1]), 1e-9):
            return True, False
        c = self.cfg
        if sigma is not None:
            level = max(tr.sigma_level if tr.sigma_level is not None else 0.0, c.sigma_floor)
            if sigma > c.max_sigma or (tr.sigma_level is not None and sigma > c.sigma_jump * level):
                return True, False
        u = in_crop(pts, crop)
        if (u.min(0) < c.edge).any() or (u.max(0) > 1 - c.edge).any():
            return True, True
        ub = landmark_box(u)
        centre = (ub[:2] + ub[2:]) / 2 - 0.5
        ratio = CROP_SCALE * max(ub[2] - ub[0], ub[3] - ub[1])  # landmark side / the side the crop expects
        off = float(np.hypot(*centre)) > c.max_shift or abs(math.log(max(ratio, 1e-9))) > c.max_scale
        return False, off

    def _pass(self, img, ids: list[int], boxes: dict[int, np.ndarray], res: dict) -> None:
        """One model pass for tracks `ids` on self._crops[id]; results stored in res[id] (with the
        track's box as "crop_box")."""
        if not ids:
            return
        out = self.run(img, [self._crops[i] for i in ids])
        self.model_passes += 1
        for k, i in enumerate(ids):
            res[i] = {key: (None if v is None else v[k]) for key, v in out.items()}
            res[i]["crop_box"] = boxes[i].copy()

    # -- one frame ---------------------------------------------------------------------------
    def step(self, img: np.ndarray, t: float | None = None, user: list[Detection] | None = None) -> list[tuple]:
        c = self.cfg
        t = self._clock(t)
        gap = self._t is not None and t - self._t > c.smooth_gap_s
        self._t = t
        self._frame_wh = (img.shape[1], img.shape[0])
        self.lost = [r for r in self.lost if t - r.t <= c.lost_keep_s]
        motion = c.predict_motion and not gap
        boxes = {tr.id: tr.predicted_box(t, motion) for tr in self.tracks}
        self._crops = {tr.id: tr.predicted_crop(t, motion) for tr in self.tracks}
        healthy = {tr.id for tr in self.tracks if not tr.from_detection}
        due = (self._frame - self._last_detect_frame >= c.redetect_every or t - self._last_detect_t >= c.redetect_s
               or bool(self.lost))  # a face was lost lately: look for it on every frame
        detected = user is not None or not self.tracks or due
        matched: set[int] = set()
        self._det_boxes = {}  # this frame's detection matched to each track
        if detected:
            matched = self._associate(self._detect(img, user), t, boxes, healthy)
            self._last_detect_frame, self._last_detect_t = self._frame, t
            for tr in self.tracks:
                if tr.id not in matched:
                    tr.misses += 1
        self._frame += 1
        res: dict[int, dict] = {}
        verdict: dict[int, tuple[bool, bool]] = {}

        def run_and_check(ids):
            self._pass(img, ids, boxes, res)
            two = [i for i in ids if self._by_id(i).from_detection]  # detector box: re-crop around pass 1
            for i in ids:
                verdict[i] = self._check(self._by_id(i), res[i]["pts"], res[i]["sigma"], self._crops[i], img.shape)
            again = [i for i in ids if (i in two or (verdict[i][1] and not verdict[i][0]))
                     and np.isfinite(res[i]["pts"]).all()]
            for i in again:
                boxes[i], self._crops[i] = landmark_box(res[i]["pts"]), landmark_crop(res[i]["pts"])
            self._pass(img, again, boxes, res)
            for i in again:
                verdict[i] = self._check(self._by_id(i), res[i]["pts"], res[i]["sigma"], self._crops[i], img.shape)

        run_and_check([tr.id for tr in self.tracks])
        bad = [tr for tr in self.tracks if verdict[tr.id][0]]
        retry = [tr for tr in bad if tr.id in self._det_boxes and not tr.from_detection]
        if retry and detected:  # lost on its own crop, but this frame's detection matched it: restart from that
            for tr in retry:
                boxes[tr.id], tr.from_detection = self._det_boxes[tr.id], True
                self._crops[tr.id] = box_crop(boxes[tr.id])
                tr.sigma_level, tr.restart = None, True
            run_and_check([tr.id for tr in retry])
        elif bad and not detected:  # lost: look for the faces on this very frame
            before = {tr.id for tr in self.tracks}
            for tr in bad:
                tr.sigma_level, tr.restart = None, True
            matched = self._associate(self._detect(img, None), t, boxes, healthy - {tr.id for tr in bad})
            self._last_detect_frame, self._last_detect_t = self._frame - 1, t
            redo = [tr.id for tr in self.tracks if tr.id not in before or (tr.id in matched and verdict[tr.id][0])]
            for tr in self.tracks:
                if tr.id in before and tr.id not in matched:
                    tr.misses += 1
            run_and_check(redo)
            detected = True
        for tr in list(self.tracks):  # lost, or a scheduled detection missed it too often: drop
            lost = verdict[tr.id][0]
            if lost or tr.misses >= c.max_misses or (detected and tr.id not in matched and tr.from_detection):
                self._drop(tr)
        self._drop_duplicates(res, boxes, t)
        out = []
        for tr in self.tracks:
            r = res[tr.id]
            self._update(tr, r, t, gap)
            shown = tr.smoother(r["pts"], t, scale=_side(r["pts"])) if c.smooth else r["pts"].astype(np.float64)
            out.append((tr, r, shown))
        return out

    def _by_id(self, i: int) -> Track:
        return next(tr for tr in self.tracks if tr.id == i)

    def _drop(self, tr: Track) -> None:
        self.tracks.remove(tr)
        if tr.landmarks is not None:  # remembered on its path (box and velocity of its last good frame)
            tr.smoother, tr.restart = None, True
            self.lost.append(tr)

    def _drop_duplicates(self, res, boxes, t) -> None:
        """Two tracks on one face (landmark boxes overlapping > DUPLICATE_IOU), or overlapping
        (> OVERLAP_IOU) while one of them jumped away from its motion prediction (pulled onto the
        face in front): drop the one that jumped more (ties: the younger); it is remembered."""
        def off(tr, pb):
            lb = landmark_box(res[tr.id]["pts"])
            side = max(pb[2] - pb[0], pb[3] - pb[1], 1.0)
            return float(np.hypot(*((lb[:2] + lb[2:]) - (pb[:2] + pb[2:])) / 2)) / side

        def jump(tr):
            if tr.landmarks is None:
                return 1.0
            j = off(tr, tr.predicted_box(t, self.cfg.predict_motion))
            return max(j, off(tr, tr.remembered_box(t)) * MAX_JUMP / MAX_DRIFT) if tr.anchor is not None else j
        jumps = {tr.id: jump(tr) for tr in self.tracks}
        keep: list[Track] = []
        for tr in sorted(self.tracks, key=lambda tr: (jumps[tr.id], tr.id)):
            ious = [box_iou(landmark_box(res[tr.id]["pts"]), landmark_box(res[k.id]["pts"])) for k in keep]
            if any(i > DUPLICATE_IOU for i in ious) or (any(i > OVERLAP_IOU for i in ious) and jumps[tr.id] > MAX_JUMP):
                self._drop(tr)
            else:
                keep.append(tr)

    def _update(self, tr: Track, r: dict, t: float, gap: bool) -> None:
        pts = r["pts"].astype(np.float64)
        lb = landmark_box(pts)
        if tr.landmarks is not None and not gap and t > tr.t:  # the same face (matched, or revived on its path)
            dt = t - tr.t
            v = ((lb[:2] + lb[2:]) - (tr.box[:2] + tr.box[2:])) / 2 / dt
            z = math.log(_side(pts) / max(_side_box(tr.box), 1e-9)) / dt
            tr.velocity = (1 - VELOCITY_MEMORY) * v + VELOCITY_MEMORY * tr.velocity
            tr.zoom_rate = (1 - VELOCITY_MEMORY) * z + VELOCITY_MEMORY * tr.zoom_rate
        else:
            tr.velocity, tr.zoom_rate = np.zeros(2), 0.0
        if r.get("sigma") is not None:
            s = float(r["sigma"])
            tr.sigma_level = s if tr.sigma_level is None else SIGMA_MEMORY * tr.sigma_level + (1 - SIGMA_MEMORY) * s
        if tr.smoother is None or tr.restart or gap:
            tr.smoother = FaceSmoother(fps=self.cfg.fps)
        tr.landmarks, tr.box, tr.t, tr.roll = pts, lb, t, roll_deg(pts)
        tr.from_detection = tr.restart = False
        if all(box_iou(lb, o.box) <= OVERLAP_IOU for o in self.tracks if o is not tr):
            tr.anchor = (lb.copy(), tr.velocity.copy(), tr.zoom_rate, t)


def _side(pts) -> float:
    return float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]), 1.0))


def _side_box(b) -> float:
    return float(max(b[2] - b[0], b[3] - b[1], 1.0))


__all__ = ["TrackingConfig", "Track", "VideoTracker", "in_crop", "box_crop", "landmark_crop"]
