"""Short scripted scenes for the in-browser webcam's tracker (app/static/browser_webcam/tracking.js)
against core.tracking.VideoTracker, each checked frame by frame as the long scene of
tests/test_browser_webcam_tracking.py (whose model, detector, page and comparison they use): a face
jumping at 3 fps, the same jump landing beside another face, and a crossing whose front face is lost
and revived beside the other's remembered path. Each also shows, in Python, that the rule it is for
decides frames of it (the rule switched off, the frames change)."""
from __future__ import annotations

import numpy as np
import pytest
from test_browser_webcam_tracking import (  # noqa: F401  (page: the module-scoped fixture, used by name)
    _PAGE_SCENE, H, MAX_FACES, MAX_RATIO, PAGE_RUN, PROBE_S, PTS_TOL, W, _compare, _python_run, faces_at, page)

from core.tracking import TrackingConfig, VideoTracker


def _page_run(page, scene: dict) -> list[dict]:  # noqa: F811  (the page, not the fixture)
    """The page's tracker on `scene` (_python_run's keywords), its faces scripted by scene["faces_at"]."""
    cfg = scene.get("config")
    run = PAGE_RUN if cfg is None else PAGE_RUN.replace(
        "new TrackingConfig()", f"new TrackingConfig({{ redetectEvery: {cfg.redetect_every} }})")
    n, times = scene["n"], scene["times"]
    _PAGE_SCENE[0] = scene["faces_at"]
    try:
        return page.evaluate(run, [n, W, H, None, [times(k) for k in range(n)], scene.get("max_faces", MAX_FACES),
                                   list(PROBE_S), MAX_RATIO])
    finally:
        _PAGE_SCENE[0] = faces_at


JUMP_SIDE = 150.0


def jump_faces_at(k: int) -> dict[str, tuple[float, float, float]]:
    """A face still for two frames, then 1.4 of its sides further right,
    past its crop and its predicted box: the new track takes the lost one's id (core.tracking._inherit)."""
    return {"a": (200.0 + (1.4 * JUMP_SIDE if k >= 2 else 0.0), 240.0, JUMP_SIDE)}


def heir_faces_at(k: int) -> dict[str, tuple[float, float, float]]:
    """The jump scene beside a second face (3 fps): a jumps 1.8 sides, to 0.67 sides beside b (landmark boxes
    overlapping 0.2): the track started on it takes a's id and, overlapping b's, is dropped; a stays remembered."""
    return {"a": (150.0 + (1.8 * JUMP_SIDE if k >= 2 else 0.0), 240.0, JUMP_SIDE), "b": (520.0, 240.0, JUMP_SIDE)}


def crossing_faces_at(k: int) -> dict[str, tuple[float, float, float]]:
    """A crossing (30 fps): e walks right behind f (hidden from frame 22 to 32). f is lost
    with it on 23-25 and comes back 0.14 sides right, over e's remembered path (revived where its own path
    says: kept, not taken for a pulled track); on 33 e comes out while the detector misses f (merged into
    e's box, which overlaps f's track 0.46): it confirms f's track and revives e."""
    x = 100.0 + 12.0 * k
    out = {} if 360.0 <= x < 496.0 else {"e": (x, 240.0, 150.0)}
    return out if 23 <= k < 26 else {**out, "f": (420.0 + (21.0 if k >= 26 else 0.0), 260.0, 150.0)}



@pytest.mark.parametrize("redetect", ["scheduled", "on loss"])
def test_page_tracker_passes_the_id_to_the_track_of_a_jumped_face(page, monkeypatch, redetect):  # noqa: F811
    """The 3 fps jump scene: the face leaves its crop and its predicted box; the track started on the
    detection takes the lost track's id in both trackers, whether the detector was due on that frame
    (every frame) or ran because the track was lost."""
    n, times = 5, (lambda k: k / 3.0)
    every = 1 if redetect == "scheduled" else 100
    scene = dict(faces_at=jump_faces_at, n=n, times=times, user_box=None, config=TrackingConfig(redetect_every=every))
    want = _python_run(**scene)
    assert [f["ids"] for f in want] == [[0]] * n and all(not f["lost"] for f in want)
    with monkeypatch.context() as m:
        m.setattr("core.tracking.INHERIT_MAX_SHIFT", 0.0)
        assert _python_run(**scene)[2]["ids"] == [1]  # without it: a new id
    assert _compare(_page_run(page, scene), want) < PTS_TOL


def test_page_tracker_keeps_the_face_in_front_of_a_crossing(page, monkeypatch):  # noqa: F811
    """The crossing scene: both trackers keep f (id 0) from frame 26 and find e (id 1) again on the frame it
    comes out; each of the two rules decides frames of it (checked by switching it off in Python)."""
    n, times = 40, (lambda k: k / 30.0)
    scene = dict(faces_at=crossing_faces_at, n=n, times=times, user_box=None)
    want = _python_run(**scene)
    assert [f["ids"] for f in want[26:]] == [[0]] * 7 + [[0, 1]] * 7
    with monkeypatch.context() as m:
        m.setattr(VideoTracker, "_lost_face_explains", lambda self, box, iou, t: False)
        assert _python_run(**scene)[33]["ids"] != [0, 1]  # without it f's track takes e's detection
    with monkeypatch.context() as m:
        drop = VideoTracker._drop_duplicates

        def not_revived(self, res, t, pull=True):
            for tr in self.tracks:
                tr.revived = False
            drop(self, res, t, pull)
        m.setattr(VideoTracker, "_drop_duplicates", not_revived)
        assert _python_run(**scene)[26]["ids"] == []  # judged by its stale box, f is dropped as pulled
    assert _compare(_page_run(page, scene), want) < PTS_TOL


def test_page_tracker_remembers_a_face_whose_heir_is_dropped(page, monkeypatch):  # noqa: F811
    """The jump scene beside a second face: in both trackers a stays remembered (id 0 in `lost`) after the
    track that took its id is dropped on the same frame, and the detector keeps looking for it."""
    n, times = 5, (lambda k: k / 3.0)
    scene = dict(faces_at=heir_faces_at, n=n, times=times, user_box=None, config=TrackingConfig(redetect_every=100),
                 max_faces=3)  # a's lost track holds a place while the detector runs on its frame
    want = _python_run(**scene)
    assert [f["ids"] for f in want] == [[0, 1]] * 2 + [[1]] * 3 and [f["lost"] for f in want[2:]] == [[0]] * 3
    assert np.diff([f["detector_calls"] for f in want[1:]]).tolist() == [1, 1, 1]
    with monkeypatch.context() as m:
        inherit = VideoTracker._inherit

        def forgetting(self, *args):
            inherit(self, *args)
            self._inherited.clear()
        m.setattr(VideoTracker, "_inherit", forgetting)
        assert _python_run(**scene)[2]["lost"] == []  # without it a is forgotten with its heir
    assert _compare(_page_run(page, scene), want) < PTS_TOL
