"""Video tracking (core.tracking) when two faces cross, on the synthetic scene of tests/tracking_scene.py:
ids kept, the remembered path of a covered face, a track pulled onto a face coming back from behind it,
and the face in front taken up again (session 22's re-detection rules)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.tracking_scene import IMG, Scene, err, face_at, tracker


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
