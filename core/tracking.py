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
     crop units) exceeds `max_sigma` or jumps above `sigma_jump` x its running level, or, with a
     `max_ratio`, its uncertainty ratio (that std / inter-ocular distance, core.image_faces) exceeds
     it: the test image mode keeps a face by (FaceAligner passes the model's threshold at its
     min_confidence), which catches a model that stays sure of itself on the background after the
     face has left. A lost
     track triggers the detector on this frame (or, when a detection already ran on this frame and
     matched it, reuses that detection: a slow frame where the face left the crop the matched
     track had kept); a detection that continues it restarts it (two passes, smoothing
     restarted); without one it is dropped (no ghost faces);
  5. a dropped track is remembered for `lost_keep_s`, and meanwhile the detector runs on every
     frame: a new detection on its remembered path (Track.anchor: its clear frame ANCHOR_LAG_S
     before the last one, moving as it did over the frames before that; held inside the frame: a
     face that left at an edge comes back there; one whose motion took it over the edge is expected
     where it left, Track.left_box) takes its id again from `revive_iou` (identity
     kept when a face passes behind another or an occluder, found again on the frame it comes
     back); so does a track lost on its own crop (a face that moved further than predicted); a
     track whose landmarks jump onto the path of a face lost in the last PULL_S seconds (pulled
     onto the face coming back from behind it) is dropped, as one pulled onto a tracked face is (a
     track revived on this frame is judged by its remembered path: its old box is no prediction); a
     detection that a lost face's path overlaps more than a tracked face's box confirms that track
     (its own crop kept) and is left to revive the lost face coming back from behind it;
  6. One-Euro smoothing with one cutoff per face (core.smoothing.FaceSmoother) on the real interval
     between frames, restarted after a gap longer than `smooth_gap_s` and whenever the track
     restarts from a detection.
Constants, TrackingConfig, Track and the crop geometry live in core.track (re-exported here)."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .detectors import Detection, box_iou
from .image_faces import roll_deg, uncertainty_ratio
from .landmarks import CROP_SCALE
from .smoothing import FaceSmoother
from .track import (DUPLICATE_IOU, INHERIT_MAX_SHIFT, INHERIT_MAX_ZOOM, INHERIT_SPEED, KEEP_IOU, MATCH_IOU,
                    MAX_DRIFT, MAX_JUMP, MIN_FACE_SIDE, OVERLAP_IOU, PULL_MAX_DT, PULL_S, SIGMA_MEMORY,
                    TRACK_MIN_INSIDE, VELOCITY_MEMORY, Track, TrackingConfig, _side, _side_box,
                    box_crop, centre_offset, in_crop, landmark_box, landmark_crop)


class VideoTracker:
    """Tracks faces across frames. `run(img, crops) -> {"pts", "cov", "adj", "sigma"}` is one batched
    model pass on crops [cx, cy, side, angle] (FaceAligner._run_crops); `detect(img)` returns
    Detections (landmark-box estimates). `step` returns (track, model-output row, landmarks to show).
    max_ratio: uncertainty ratio above which a track is lost (None: no such test)."""

    def __init__(self, run: Callable, detect: Callable, config: TrackingConfig | None = None, max_faces: int = 8,
                 max_ratio: float | None = None):
        self.run, self.detect = run, detect
        self.cfg = config or TrackingConfig()
        self.max_faces, self.max_ratio = max_faces, max_ratio
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
        self._inherited: dict[int, Track] = {}  # this frame's lost track whose id a new track took (_inherit)
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

    def _best_remembered(self, box: np.ndarray, t: float) -> tuple[float, Track | None]:
        """(overlap, track): the lost track whose remembered path overlaps `box` most (the first of equals)."""
        return max(((box_iou(self._in_frame(r.remembered_box(t)), box), r) for r in self.lost),
                   key=lambda p: p[0], default=(0.0, None))

    def _lost_face_explains(self, box: np.ndarray, iou: float, t: float) -> bool:
        """Whether a lost face's remembered path overlaps detection `box` more than a tracked face's box does (iou)."""
        return self._best_remembered(box, t)[0] > iou

    def _new_track(self, d: Detection, t: float) -> Track:
        tr = Track(self._next_id, d.box.copy(), d.score, t)
        self._next_id += 1
        return tr

    def _associate(self, dets: list[Detection], t: float, boxes: dict[int, np.ndarray], healthy: set[int],
                   lost: frozenset = frozenset()) -> set[int]:
        """Greedy IoU matching of detections to the tracks' predicted boxes; returns matched track ids.
        Tracks in `lost` (lost on their own crop this frame) take a detection from `revive_iou`, as a
        remembered track does (a face that moved further than the motion prediction: the frame after a
        detection at 3 fps). Unmatched detections revive a remembered track on their path, else start a new one."""
        pairs = sorted(((box_iou(boxes[tr.id], d.box), i, j) for i, tr in enumerate(self.tracks)
                        for j, d in enumerate(dets)), key=lambda p: -p[0])
        used_t, used_d = set(), set()
        for iou, i, j in pairs:
            gate = self.cfg.revive_iou if self.tracks[i].id in lost else MATCH_IOU
            if iou < gate or i in used_t or j in used_d:
                continue
            tr, d = self.tracks[i], dets[j]
            if tr.id in healthy and iou < KEEP_IOU and self._lost_face_explains(d.box, iou, t):
                used_t.add(i)  # a face lost lately explains it better: it confirms this track, which keeps
                tr.misses = 0  # its own crop, and is left to revive that face (coming back from behind this one)
                continue
            used_t.add(i)
            used_d.add(j)
            tr.score, tr.misses = d.score, 0
            self._det_boxes[tr.id] = d.box.copy()
            if iou < KEEP_IOU or tr.id not in healthy:
                boxes[tr.id], self._crops[tr.id] = d.box.copy(), box_crop(d.box)
                tr.from_detection = True
        matched = {self.tracks[i].id for i in used_t}
        for d in (dets[j] for j in range(len(dets)) if j not in used_d):
            if len(self.tracks) >= self.max_faces:
                break
            iou, best = self._best_remembered(d.box, t)
            if best is not None and iou >= self.cfg.revive_iou:
                self.lost.remove(best)
                tr = best
                tr.score, tr.misses, tr.velocity, tr.zoom_rate = d.score, 0, np.zeros(2), 0.0
                tr.revived = True
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
        if sigma is not None and self.max_ratio is not None and uncertainty_ratio(u, sigma) > self.max_ratio:
            return True, False
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
        dt = math.inf if self._t is None else t - self._t
        self._t = t
        self._frame_wh = (img.shape[1], img.shape[0])
        self.lost = [r for r in self.lost if t - r.t <= c.lost_keep_s]
        motion = c.predict_motion and not gap
        first_new = self._next_id  # tracks with ids from here on start on this frame
        boxes = {tr.id: tr.predicted_box(t, motion) for tr in self.tracks}
        self._crops = {tr.id: tr.predicted_crop(t, motion) for tr in self.tracks}
        healthy = {tr.id for tr in self.tracks if not tr.from_detection}
        due = (self._frame - self._last_detect_frame >= c.redetect_every or t - self._last_detect_t >= c.redetect_s
               or bool(self.lost))  # a face was lost lately: look for it on every frame
        detected = user is not None or not self.tracks or due
        matched: set[int] = set()
        self._det_boxes = {}  # this frame's detection matched to each track
        self._inherited = {}
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
            matched = self._associate(self._detect(img, None), t, boxes, healthy - {tr.id for tr in bad},
                                      frozenset(tr.id for tr in bad))
            self._last_detect_frame, self._last_detect_t = self._frame - 1, t
            redo = [tr.id for tr in self.tracks if tr.id not in before or (tr.id in matched and verdict[tr.id][0])]
            for tr in self.tracks:
                if tr.id in before and tr.id not in matched:
                    tr.misses += 1
            run_and_check(redo)
            detected = True
        dropped = []
        for tr in list(self.tracks):  # lost, or a scheduled detection missed it too often: drop
            lost = verdict[tr.id][0]
            if lost or tr.misses >= c.max_misses or (detected and tr.id not in matched and tr.from_detection):
                self._drop(tr)
                dropped += [tr] if lost and tr.landmarks is not None else []
        self._inherit(dropped, first_new, res, t, motion)
        self._drop_duplicates(res, t, pull=dt <= PULL_MAX_DT)
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
            pb, (w, h) = tr.predicted_box(self._t, self.cfg.predict_motion), self._frame_wh
            tr.left_box = pb if pb[0] < 0 or pb[1] < 0 or pb[2] > w - 1 or pb[3] > h - 1 else None
            self.lost.append(tr)
        elif tr.id in self._inherited:  # a new track that took a lost one's id: that face stays remembered
            self.lost.append(self._inherited.pop(tr.id))

    def _inherit(self, dropped: list[Track], first_new: int, res, t: float, motion: bool) -> None:
        """A track started on this frame takes the id of a track lost on it (`dropped`) when its
        landmarks lie within the distance a face moves meanwhile, INHERIT_SPEED landmark-box sides a
        second since the lost track's last frame (at most INHERIT_MAX_SHIFT), from its motion
        prediction, at a similar size: at 3 fps a face moving sideways leaves its crop and the motion
        prediction in one frame. Closest pairs first; the lost track is then not remembered (again if the
        new track is dropped on this frame, `_drop`: the face is not forgotten). Only this
        frame's results `res` are keyed by id from here on."""
        pairs = []
        for d in dropped:
            pb = d.predicted_box(t, motion)
            reach = min(INHERIT_MAX_SHIFT, INHERIT_SPEED * (t - d.t))
            for f in (tr for tr in self.tracks if tr.id >= first_new):
                lb = landmark_box(res[f.id]["pts"])
                dist = centre_offset(lb, pb)
                if dist <= reach and abs(math.log(_side_box(lb) / _side_box(pb))) <= INHERIT_MAX_ZOOM:
                    pairs.append((dist, d.id, f.id, d, f))
        done: set[int] = set()
        for _, _, _, d, f in sorted(pairs, key=lambda p: p[:3]):
            if id(d) in done or id(f) in done:
                continue
            done |= {id(d), id(f)}
            res[d.id] = res.pop(f.id)
            f.id = d.id
            self.lost.remove(d)
            self._inherited[f.id] = d

    def _drop_duplicates(self, res, t, pull: bool = True) -> None:
        """Two tracks on one face (landmark boxes overlapping > DUPLICATE_IOU), or overlapping
        (> OVERLAP_IOU) while one of them jumped away from its motion prediction (pulled onto the
        face in front): drop the one that jumped more (ties: the younger); it is remembered. A track
        that jumped onto the remembered path of a face lost in the last PULL_S seconds (the face
        coming back from behind it) is dropped too, not left to take that face's place; only with
        `pull`, frames up to PULL_MAX_DT apart (at 3 fps a face's real motion jumps as far). A track
        revived on this frame is judged by its remembered path alone (its last box is from before it
        was lost): the face in front, taken up again where its path says, is not a pulled track."""
        def off(tr, pb):
            return centre_offset(landmark_box(res[tr.id]["pts"]), pb)

        def jump(tr):
            if tr.landmarks is None:
                return 1.0
            drift = off(tr, tr.remembered_box(t)) * MAX_JUMP / MAX_DRIFT if tr.path else None
            if tr.revived and drift is not None:  # its last box is old, its motion reset: only its path predicts it
                return drift
            j = off(tr, tr.predicted_box(t, self.cfg.predict_motion))
            return j if drift is None else max(j, drift)
        jumps = {tr.id: jump(tr) for tr in self.tracks}
        keep: list[Track] = []
        paths = [(r.box, self._in_frame(r.remembered_box(t))) for r in self.lost if pull and t - r.t <= PULL_S]
        for tr in sorted(self.tracks, key=lambda tr: (jumps[tr.id], tr.id)):
            lb = landmark_box(res[tr.id]["pts"])
            ious = [box_iou(lb, landmark_box(res[k.id]["pts"])) for k in keep]
            pulled = [box_iou(lb, b) for last, b in paths  # another face's path (not a former duplicate of this one)
                      if tr.landmarks is not None and box_iou(last, tr.box) <= DUPLICATE_IOU]
            pulled_or_overlapping = any(i > OVERLAP_IOU for i in ious + pulled) and jumps[tr.id] > MAX_JUMP
            if any(i > DUPLICATE_IOU for i in ious) or pulled_or_overlapping:
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
        tr.left_box = None
        tr.from_detection = tr.restart = tr.revived = False
        if all(box_iou(lb, o.box) <= OVERLAP_IOU for o in self.tracks if o is not tr):
            tr.remember(lb, t)


__all__ = ["TrackingConfig", "Track", "VideoTracker", "in_crop", "box_crop", "landmark_crop"]
