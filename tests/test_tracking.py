"""Video tracking (core.tracking) with a stand-in model that sees the synthetic scene: it returns
the landmarks of the face under a crop (core.landmarks crop convention), a high uncertainty when
no face is there, and a detector that finds the visible faces. Checks re-detection on a jump,
no ghost faces, identity kept when two faces cross, smoothing on the real frame interval."""
from __future__ import annotations

import numpy as np
import pytest

from core.config import ConfigError, from_dict
from core.detectors import Detection
from core.tracking import TrackingConfig, VideoTracker
from tests.synth_faces import face_points

SIZE = 100  # face_points(SIZE): face ~70 px wide
FRAME = (360, 640, 3)
SIGMA_FACE, SIGMA_NONE = 0.01, 0.2  # crop units


def face_at(cx, cy, noise=0.0, rng=None):
    p = face_points(SIZE, noise=noise, rng=rng).astype(np.float64)
    return p - (p.min(0) + p.max(0)) / 2 + [cx, cy]


class Scene:
    """The faces of the current frame (front face last) and a stand-in model/detector."""

    def __init__(self):
        self.faces: list[np.ndarray] = []
        self.hidden: set[int] = set()  # faces behind another one: neither seen nor detected
        self.undetected: set[int] = set()  # faces the model sees but the detector misses (merged into another's box)
        self.pull = np.zeros(2)  # px added to the model's landmarks (not the detector's boxes): a pulled model
        self.detector_calls = 0

    def seen(self):
        return [f for i, f in enumerate(self.faces) if i not in self.hidden]

    def run(self, img, crops):
        pts, sig = [], []
        for cx, cy, side, _ in crops:  # upright faces: the crop's turn (their roll, ~0) is ignored
            best = min(self.seen(), key=lambda f: np.hypot(*(f.mean(0) - [cx, cy])), default=None)
            if best is not None and np.abs(best.mean(0) - [cx, cy]).max() < side / 2:
                lo, hi = np.array([cx, cy]) - side / 2, np.array([cx, cy]) + side / 2
                pts.append(np.clip(best + self.pull, lo + 1, hi - 1))  # the model cannot point outside its crop
                sig.append(SIGMA_FACE)
            else:  # nothing there: a template in the middle, very unsure
                pts.append(face_at(cx, cy) * 0 + face_at(cx, cy))
                sig.append(SIGMA_NONE)
        k = len(crops)
        return {"pts": np.stack(pts), "cov": None, "adj": np.zeros((k, 68, 68), np.float32), "sigma": np.array(sig)}

    def detect(self, img):
        self.detector_calls += 1
        h, w = img.shape[:2]
        out = []
        for f in (f for i, f in enumerate(self.faces) if i not in self.hidden | self.undetected):
            c = f.mean(0)
            if 0 <= c[0] < w and 0 <= c[1] < h:
                out.append(Detection(np.r_[f.min(0), f.max(0)] + [2, -2, 2, -2], 0.9))
        return out


def tracker(scene, **cfg):
    return VideoTracker(scene.run, scene.detect, TrackingConfig(**cfg))


def err(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b), axis=1).mean())


IMG = np.zeros(FRAME, np.uint8)


def test_redetects_on_the_frame_of_a_jump():
    scene, vt = Scene(), None
    scene.faces = [face_at(200, 180)]
    vt = tracker(scene, redetect_every=100, redetect_s=100.0)
    for k in range(5):
        out = vt.step(IMG, k / 30)
    assert scene.detector_calls == 1 and len(out) == 1
    scene.faces = [face_at(450, 180)]  # the face jumps far beyond its crop
    out = vt.step(IMG, 5 / 30)
    assert scene.detector_calls == 2  # lost -> detector on this very frame
    assert len(out) == 1 and err(out[0][2], scene.faces[0]) < 2.0  # tracked (smoothed: part of the 3 px)  # recovered at once, no ghost left behind
    scene.faces = [face_at(450 + 3, 180)]
    out = vt.step(IMG, 6 / 30)
    assert len(out) == 1 and err(out[0][2], scene.faces[0]) < 2.0  # tracked (smoothed: part of the 3 px)


def test_crop_off_is_recropped_without_detector():
    scene = Scene()
    scene.faces = [face_at(200, 180)]
    vt = tracker(scene, redetect_every=100, redetect_s=100.0, predict_motion=False, smooth=False)
    vt.step(IMG, 0.0)
    passes = vt.model_passes
    scene.faces = [face_at(200 + 5, 180)]  # 5 px on a 65 px crop: landmarks off-centre, still inside
    out = vt.step(IMG, 1 / 30)
    assert scene.detector_calls == 1 and vt.model_passes == passes + 2  # tracked pass + re-crop pass
    assert err(out[0][2], scene.faces[0]) < 0.5


def test_lost_on_its_crop_restarts_from_the_detection_of_that_frame():
    """A slow frame: the face moved out of its crop (its landmarks hit the crop border) while the
    scheduled detection, overlapping the old box enough to be matched to the track, sees it: the
    track restarts from that detection on this frame (it used to be dropped: no face shown)."""
    scene = Scene()
    scene.faces = [face_at(200, 180)]
    vt = tracker(scene, redetect_every=1, predict_motion=False, smooth=False)
    first = vt.step(IMG, 0.0)
    scene.faces = [face_at(210, 180)]  # 10 px on a 50 px face: out of its crop, IoU with the old box > KEEP_IOU
    out = vt.step(IMG, 1.5)
    assert scene.detector_calls == 2  # the scheduled detection only
    assert len(out) == 1 and out[0][0].id == first[0][0].id
    assert err(out[0][2], scene.faces[0]) < 0.5


def test_face_that_moved_past_its_crop_keeps_its_id():
    """At 3 fps a face moves ~0.7 of its width between frames (its velocity not yet known): the track is
    lost on its own crop, and the detection of that frame, overlapping the predicted box by only ~0.17
    (under MATCH_IOU), continues it like a remembered track's (revive_iou) instead of starting a new id."""
    from core.detectors import box_iou
    from core.track import MATCH_IOU

    scene = Scene()
    vt = tracker(scene, redetect_every=100, redetect_s=100.0)
    scene.faces = [face_at(200, 180)]
    ids = [tr.id for tr, _, _ in vt.step(IMG, 0.0)]
    scene.faces = [face_at(235, 180)]
    face_box = np.r_[scene.faces[0].min(0), scene.faces[0].max(0)]
    assert vt.cfg.revive_iou < box_iou(vt.tracks[0].predicted_box(1 / 3), face_box) < MATCH_IOU
    out = vt.step(IMG, 1 / 3)
    assert scene.detector_calls == 2 and len(out) == 1 and err(out[0][1]["pts"], scene.faces[0]) < 1.0
    assert [tr.id for tr, _, _ in out] == ids == [0] and not vt.lost


@pytest.mark.parametrize("scheduled", [False, True])
def test_face_that_jumped_its_width_at_3fps_keeps_its_id(scheduled):
    """At 3 fps a face moving sideways jumps more than its width between frames: no overlap with its
    crop or its predicted box, so the detection starts a new track while the old one is lost. The new
    track takes the lost one's id (within INHERIT_SPEED sides a second), whether the detector was due
    on that frame or ran because the track was lost. At 30 fps the same jump is another face."""
    from core.track import INHERIT_SPEED

    for fps, same in ((3.0, True), (30.0, False)):
        scene = Scene()
        vt = tracker(scene, redetect_every=1 if scheduled else 100, redetect_s=100.0)
        scene.faces = [face_at(200, 180)]
        first = [tr.id for tr, _, _ in vt.step(IMG, 0.0)]
        side = vt.tracks[0].box[2] - vt.tracks[0].box[0]
        scene.faces = [face_at(200 + 1.4 * side, 180)]
        assert 1.4 < INHERIT_SPEED / 3.0
        out = vt.step(IMG, 1 / fps)
        assert len(out) == 1 and err(out[0][1]["pts"], scene.faces[0]) < 1.0
        assert (out[0][0].id == first[0]) == same, (fps, out[0][0].id, first)
        assert len(vt.lost) == (0 if same else 1)  # the lost track is not remembered beside its heir


def test_no_ghost_faces_when_the_face_leaves_or_vanishes():
    scene = Scene()
    vt = tracker(scene)
    t = 0.0
    for x in range(300, 760, 40):  # walks out of the frame to the right
        scene.faces = [face_at(x, 180)]
        out = vt.step(IMG, t)
        t += 1 / 10
        lm = scene.faces[0]
        inside = ((lm[:, 0] >= 0) & (lm[:, 0] < FRAME[1])).mean()
        if inside < 0.3:
            assert out == []  # nothing drawn beside the frame's edge
        for _, _, shown in out:
            assert err(shown, lm) < 15.0  # whatever is shown sits on the face
    scene.faces = [face_at(300, 180)]
    assert len(vt.step(IMG, t)) == 1
    scene.faces = []  # cut to an empty scene
    assert vt.step(IMG, t + 0.1) == []
    assert vt.step(IMG, t + 0.2) == [] and vt.tracks == []


def test_a_model_calm_on_the_background_loses_the_track_by_its_ratio():
    """A model that stays calm where the face was (sigma 0.04: under max_sigma, no jump with sigma_jump
    5) keeps drawing a face there until scheduled detections miss it; the uncertainty-ratio test
    (sigma / inter-ocular; FaceAligner passes the model's image-mode threshold) loses it at once."""
    class Calm(Scene):
        def run(self, img, crops):
            out = super().run(img, crops)
            out["sigma"][out["sigma"] == SIGMA_NONE] = 0.04
            return out

    shown = {}
    for max_ratio in (None, 0.06):
        scene = Calm()
        vt = VideoTracker(scene.run, scene.detect, TrackingConfig(sigma_jump=5.0), max_ratio=max_ratio)
        scene.faces = [face_at(300, 180)]
        assert all(len(vt.step(IMG, k / 30)) == 1 for k in range(5))  # the face itself passes the test
        scene.faces = []
        shown[max_ratio] = sum(len(vt.step(IMG, k / 30)) for k in range(5, 20))
    assert shown[None] > 0 and shown[0.06] == 0


def test_face_back_at_the_edge_it_left_keeps_its_id():
    """A face walks out to the right, stays out for about a second and walks back in at the same edge: the
    remembered track, held inside the frame, takes the returning detection (same id)."""
    scene = Scene()
    vt = tracker(scene)
    t, ids = 0.0, []
    path = list(range(420, 781, 20)) + [780] * 3 + list(range(760, 419, -20))
    for x in path:
        scene.faces = [face_at(x, 180)]
        out = vt.step(IMG, t)
        ids += [tr.id for tr, _, _ in out]
        t += 1 / 10
    assert ids[0] == ids[-1] and len(set(ids)) == 1, ids


def test_identity_kept_when_two_faces_cross():
    """Face 0 walks right, face 1 (in front, lower) walks left; while they overlap face 0 is hidden."""
    scene = Scene()
    vt = tracker(scene)
    ids: dict[int, set] = {0: set(), 1: set()}
    missing = 0
    for k in range(60):
        t = k / 15
        u = k / 59
        scene.faces = [face_at(120 + 400 * u, 150), face_at(520 - 400 * u, 200)]
        gap = abs(scene.faces[0].mean(0)[0] - scene.faces[1].mean(0)[0])
        scene.hidden = {0} if gap < 60 else set()
        out = vt.step(IMG, t)
        for tr, _, shown in out:
            d = [err(shown, f) for f in scene.faces]
            j = int(np.argmin(d))
            assert d[j] < 12.0 and j not in scene.hidden  # no ghost: every output sits on a visible face
            ids[j].add(tr.id)
        missing = missing + 1 if len(out) < len(scene.seen()) else 0
        assert missing <= 2  # a face back in view is found again within 2 frames
    assert ids[0] == {0} and ids[1] == {1}  # the hidden face comes back with its own id


@pytest.mark.parametrize("fps", [3, 10, 30])
def test_remembered_path_ignores_the_frames_just_before_the_loss(fps):
    """A face walks right at 85 px/s; in its last 0.1 s before the loss an occluder makes its landmark
    box slide back and shrink (as a covered face's does). The remembered path comes from the clear frame
    ~0.2 s before the last, its motion measured over the frames before that: the same at every rate, and
    0.8 s later the remembered box still lies on the face's true path (a per-frame velocity average
    followed the slide at 30 fps and missed the returning face)."""
    from core.detectors import box_iou
    from core.track import REMEMBER_MAX_ZOOM, Track

    def box(x, side=70.0):
        return np.array([x - side / 2, 150 - side / 2, x + side / 2, 150 + side / 2])

    tr = Track(0, box(100), 1.0, 0.0)
    t_end = 1.0
    for k in range(int(t_end * fps) + 1):
        t = k / fps
        x, side = 100 + 85 * t, 70.0
        if t > t_end - 0.1:  # being covered: slides back, shrinks
            x, side = x - 15, 55.0
        tr.remember(box(x, side), t)
    _, v, z, t0 = tr.anchor
    assert abs(v[0] - 85) < 5 and abs(v[1]) < 1e-6 and abs(z) <= REMEMBER_MAX_ZOOM
    assert t_end - t0 >= 0.2 - 1e-9
    t = t_end + 0.8
    assert box_iou(tr.remembered_box(t), box(100 + 85 * t)) > 0.7


def test_track_pulled_onto_a_face_that_just_went_behind_it_is_dropped():
    """Face 0 goes behind face 1 (hidden: its track is lost and remembered). On the next frame the model's
    landmarks of face 1 jump towards face 0's remembered place (pulled onto the face coming back): that
    track is dropped for the frame instead of taking face 0's place, and face 1 gets its own id back on
    the next frame. At 3 fps the same jump is a face's own motion: the track is kept."""
    from core.track import MAX_JUMP, PULL_MAX_DT

    for fps, dropped in ((30, True), (3, False)):
        assert (1 / fps <= PULL_MAX_DT) == dropped
        scene = Scene()
        vt = tracker(scene, redetect_every=100, redetect_s=100.0, smooth=False, predict_motion=False)
        scene.faces = [face_at(255, 180), face_at(300, 180)]
        for k in range(4):
            out = vt.step(IMG, k / fps)
        assert sorted(tr.id for tr, _, _ in out) == [0, 1]
        scene.hidden = {0}
        out = vt.step(IMG, 4 / fps)
        assert [tr.id for tr, _, _ in out] == [1] and [r.id for r in vt.lost] == [0]
        scene.pull = np.array([-6.0, 0.0])  # 0.12 face widths: a jump (MAX_JUMP 0.08) onto face 0's path
        assert 6.0 / 50 > MAX_JUMP
        out = vt.step(IMG, 5 / fps)
        assert ([tr.id for tr, _, _ in out] == []) == dropped
        scene.pull = np.zeros(2)
        out = vt.step(IMG, 6 / fps)
        assert [tr.id for tr, _, _ in out] == [1] and err(out[0][1]["pts"], scene.faces[1]) < 1.0


def test_face_in_front_revived_where_its_path_says_is_kept():
    """Both faces of a crossing are lost for three frames (face 0 behind face 1, face 1 missed); face 1 comes
    back 10 px (0.14 widths) left of where it was lost, overlapping face 0's remembered place. Its track is
    revived from the detection: its motion was reset, so its old box is no prediction; judged by its own
    remembered path (drift 0.14 x MAX_JUMP / MAX_DRIFT < MAX_JUMP) it is kept, not taken for a pulled track."""
    from core.track import MAX_DRIFT, MAX_JUMP

    scene = Scene()
    vt = tracker(scene, smooth=False, predict_motion=False)
    scene.faces = [face_at(255, 180), face_at(300, 180)]
    for k in range(4):
        out = vt.step(IMG, k / 30)
    assert sorted(tr.id for tr, _, _ in out) == [0, 1]
    scene.hidden = {0, 1}
    for k in range(4, 7):
        assert vt.step(IMG, k / 30) == []
    assert sorted(r.id for r in vt.lost) == [0, 1]
    scene.faces[1] = face_at(290, 180)
    scene.hidden = {0}
    assert 10 / 70 > MAX_JUMP and 10 / 70 * MAX_JUMP / MAX_DRIFT < MAX_JUMP
    out = vt.step(IMG, 7 / 30)
    assert [tr.id for tr, _, _ in out] == [1] and err(out[0][1]["pts"], scene.faces[1]) < 1.0


def test_detection_of_a_face_coming_back_does_not_take_the_tracked_face_in_front():
    """Face 0 goes behind face 1 and comes back while the detector finds only face 0 (face 1 merged into
    its box). That detection overlaps face 1's track (IoU 0.47 >= MATCH_IOU) but face 0's remembered place
    more: it confirms face 1's track, which keeps its own crop, and revives face 0 (before, face 1's track
    took the detection's crop, landed on face 0 and was dropped as pulled: no face for the frame)."""
    from core.detectors import box_iou
    from core.track import KEEP_IOU, MATCH_IOU

    scene = Scene()
    vt = tracker(scene, smooth=False, predict_motion=False)
    for k in range(12):  # face 0 walks up to 25 px left of face 1 (overlapping faces do not start together)
        scene.faces = [face_at(235 + 5 * max(k - 3, 0), 180), face_at(300, 180)]
        out = vt.step(IMG, k / 30)
    assert sorted(tr.id for tr, _, _ in out) == [0, 1]
    scene.hidden = {0}
    assert [tr.id for tr, _, _ in vt.step(IMG, 12 / 30)] == [1]
    scene.hidden, scene.undetected = set(), {1}
    (det,) = scene.detect(IMG)
    assert MATCH_IOU <= box_iou(det.box, vt.tracks[0].box) < KEEP_IOU
    out = vt.step(IMG, 13 / 30)
    assert sorted(tr.id for tr, _, _ in out) == [0, 1]
    for tr, r, _ in out:
        assert err(r["pts"], scene.faces[tr.id]) < 1.0


def test_crop_turns_upright_with_the_face():
    """A face rolled by 40 degrees: after the detector's axis-aligned crop, the tracked crop turns by
    the face's roll (eye line) and its side is the training convention's in the face's own frame
    (CROP_SCALE x the upright face's landmark box)."""
    from core.image_faces import roll_deg
    from core.landmarks import CROP_SCALE

    scene = Scene()
    p = face_points(SIZE, angle_deg=40.0).astype(np.float64)
    scene.faces = [p - p.mean(0) + [300, 180]]
    vt = tracker(scene)
    crops = []
    for k in range(3):
        vt.step(IMG, k / 30)
        crops.append(vt._crops[vt.tracks[0].id].copy())
    assert crops[0][3] == pytest.approx(roll_deg(scene.faces[0]), abs=1e-6)  # pass 2 of the first frame
    assert crops[2][3] == pytest.approx(40.0, abs=1.0)
    upright = face_points(SIZE).astype(np.float64)
    assert crops[2][2] == pytest.approx(CROP_SCALE * np.ptp(upright, 0).max(), rel=0.02)


def test_smoothing_follows_the_real_frame_interval():
    """At 3 fps a still face steps 2 px: smoothed with the real timestamps the landmarks settle
    within a frame; the same frames smoothed as if they came at 30 fps trail several times longer."""
    scene = Scene()
    lags, alphas = {}, {}
    for label, stamp in (("real", lambda k: k / 3), ("assumed_30fps", lambda k: None)):
        vt = tracker(scene, redetect_every=1000, redetect_s=1000.0)
        lag = []
        for k in range(12):
            scene.faces = [face_at(200 + (2 if k >= 8 else 0), 180)]
            out = vt.step(IMG, stamp(k))
            lag.append(err(out[0][2], scene.faces[0]))
            if k == 7:
                alphas[label] = vt.tracks[0].smoother.last_alpha  # still face
        lags[label] = np.mean(lag[8:11])
    assert vt.tracks[0].smoother._t == pytest.approx(11 / 30)  # no timestamps: 1 / fps steps
    assert lags["real"] < 0.3
    assert lags["assumed_30fps"] > 2 * lags["real"]
    assert alphas["real"] > 3 * alphas["assumed_30fps"]  # 10x the interval: far less smoothing per frame


def test_still_face_jitter_is_cut():
    scene = Scene()
    rng = np.random.default_rng(1)
    vt = tracker(scene)
    raw, shown = [], []
    for k in range(90):
        scene.faces = [face_at(300, 180, noise=0.5, rng=rng)]
        raw.append(scene.faces[0])
        shown.append(vt.step(IMG, k / 30)[0][2])

    def jit(seq):
        d = np.diff(np.stack(seq[30:]), axis=0)
        return float(np.sqrt(np.mean(np.sum(d ** 2, -1))))
    assert jit(shown) < 0.5 * jit(raw)


def test_config_rejects_unknown_keys_and_bad_values(tiny_weights):
    from core.inference import FaceAligner

    assert from_dict(TrackingConfig, {"redetect_s": 0.5}).redetect_s == 0.5
    with pytest.raises(ConfigError, match="unknown"):
        from_dict(TrackingConfig, {"redetect_seconds": 0.5})
    with pytest.raises(ValueError):
        TrackingConfig(max_sigma=0)
    with pytest.raises(ConfigError):
        FaceAligner(tiny_weights, backend="torch", video=True, tracking={"smoothing": False})
    fa = FaceAligner(tiny_weights, backend="torch", video=True, tracking={"smooth": False}, detector="none")
    assert fa.tracking.smooth is False
    fa.fps = 12
    assert fa.tracking.fps == 12.0 and fa._video.cfg.fps == 12.0
