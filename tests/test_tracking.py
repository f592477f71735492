"""Video tracking (core.tracking) on the synthetic scene of tests/tracking_scene.py: re-detection on a
jump, re-crops, no ghost faces, ids kept at 3 fps and at the frame edge, the crop turned upright,
smoothing on the real frame interval, the config's checks. Two faces crossing: test_tracking_crossing.py."""
from __future__ import annotations

import numpy as np
import pytest

from core.config import ConfigError, from_dict
from core.tracking import TrackingConfig, VideoTracker
from tests.synth_faces import face_points
from tests.tracking_scene import FRAME, IMG, SIGMA_NONE, SIZE, Scene, err, face_at, tracker


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
    # recovered at once, no ghost left behind; tracked (smoothed: part of the 3 px)
    assert len(out) == 1 and err(out[0][2], scene.faces[0]) < 2.0
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


def test_face_whose_heir_is_dropped_on_the_same_frame_stays_remembered():
    """At 3 fps face 0 jumps 1.8 of its sides, to beside face 1 (landmark boxes overlapping more than
    OVERLAP_IOU): its track is lost, the detection starts a track that takes its id (_inherit), and that
    track, new and overlapping face 1's, is dropped as a pulled one. Face 0 is still remembered, so the
    detector keeps looking for it on every frame (before, the lost track had been forgotten with its heir:
    a face behind another one went unsearched until the next scheduled detection)."""
    from core.detectors import box_iou
    from core.track import DUPLICATE_IOU, INHERIT_MAX_SHIFT, OVERLAP_IOU

    scene = Scene()
    vt = tracker(scene, redetect_every=100, redetect_s=100.0)
    side = float(np.ptp(face_at(0, 0)[:, 0]))
    scene.faces = [face_at(200, 180), face_at(200 + 2.5 * side, 180)]
    assert sorted(tr.id for tr, _, _ in vt.step(IMG, 0.0)) == [0, 1]
    scene.faces[0] = face_at(200 + 1.8 * side, 180)
    boxes = [np.r_[f.min(0), f.max(0)] for f in scene.faces]
    assert OVERLAP_IOU < box_iou(*boxes) < DUPLICATE_IOU and 1.8 < INHERIT_MAX_SHIFT
    out = vt.step(IMG, 1 / 3)
    assert [tr.id for tr, _, _ in out] == [1]
    assert [r.id for r in vt.lost] == [0]
    calls = scene.detector_calls
    vt.step(IMG, 2 / 3)
    assert scene.detector_calls == calls + 1  # not due by the schedule: it looks for the lost face


def test_face_back_where_it_left_the_frame_keeps_its_id():
    """At 10 fps a still face darts out over the right edge within ANCHOR_LAG_S, so its remembered path
    (the clear frame 0.2 s before the last, moving as before it) expects it near where it stood; half of it
    comes back at that edge 1.5 s later. The lost track remembers where its motion took it over the edge
    (left_box), and the returning face's detection takes the old id (by the path alone: a new id)."""
    for remember_edge in (True, False):
        scene = Scene()
        vt = tracker(scene, smooth=False)
        xs = [520.0] * 11 + [530.0, 560.0, 600.0, 645.0, 690.0] + [720.0] * 13 + [632.0, 610.0, 590.0]
        ids = []
        for k, x in enumerate(xs):
            scene.faces = [face_at(x, 180)]
            ids.append([tr.id for tr, _, _ in vt.step(IMG, k / 10)])
            if k == 14:  # lost over the right edge
                assert [r.id for r in vt.lost] == [0] and vt.lost[0].left_box[2] > FRAME[1] - 1
            if not remember_edge:
                for r in vt.lost:
                    r.left_box = None
        assert ids[:14] == [[0]] * 14 and ids[14:29] == [[]] * 15
        assert (ids[29:] == [[0]] * 3) == remember_edge, ids[29:]


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
