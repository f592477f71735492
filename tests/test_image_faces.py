"""Image mode (core.image_faces): upright crops mapped back, the turn search, rejection and the
stability check, max_faces / truncated through the API, CLI and app. Synthetic data only; the model is either the tiny random one (conftest) or an oracle runner that
returns a fixed upright face in crop units (what a perfect model says about an upright crop)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from core.detectors import Detection
from core.face_finder import Candidate
from core.image_faces import (REJECT_RATIO, FaceList, confidence_of, drift, error_scale, predict_image, roll_deg,
                              reject_ratio_for, uncertainty_ratio, upright_crop)
from core.landmarks import apply_affine, crop_from_box, invert_affine, landmark_box
from tests.synth_faces import draw_face, face_points, face_template

SIZE = 64


class OracleRunner:
    """coords: the synthetic template (upright, centred as the training crop convention puts it);
    cov: isotropic with std `std` crop units."""

    def __init__(self, std: float = 0.005):
        t = face_template()
        lo, hi = t.min(0), t.max(0)
        side = 1.3 * max(hi - lo)
        # crop units (x SIZE = crop pixels, centres at integers): box centre at the crop centre (SIZE - 1) / 2
        self.coords = ((t - (lo + hi) / 2) / side + (SIZE - 1) / 2 / SIZE).astype(np.float32)
        self.std = std

    def __call__(self, x):
        k = x.shape[0]
        std = self.std if np.isscalar(self.std) else np.asarray(self.std)[:k]
        cov = np.zeros((k, 68, 2, 2), np.float32)
        cov[..., 0, 0] = cov[..., 1, 1] = (np.broadcast_to(std, (k,))[:, None] ** 2)
        return {"coords": np.repeat(self.coords[None], k, 0), "adjacency": np.zeros((k, 68, 68), np.float32),
                "cov": cov}


def oracle_aligner(std=0.005):
    return SimpleNamespace(input_size=SIZE, runner=OracleRunner(std))


def box_of(p):
    return np.r_[p.min(0), p.max(0)]


# --- rotation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("angle", [-90.0, -40.0, 0.0, 35.0, 90.0, 180.0])
def test_upright_crop_turns_face_upright_and_maps_back(angle):
    pts = face_points(256, angle_deg=angle).astype(np.float64)
    r = np.deg2rad(roll_deg(pts))
    np.testing.assert_allclose([np.cos(r), np.sin(r)], [np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))], atol=1e-9)
    m = upright_crop(pts, roll_deg(pts), SIZE, upright_above=30.0)
    crop_pts = apply_affine(m, pts)
    if abs(angle) > 30:
        assert abs(roll_deg(crop_pts)) < 1e-6  # upright in the crop
    assert crop_pts.min() > 0 and crop_pts.max() < SIZE - 1  # the whole face is in the crop
    np.testing.assert_allclose(apply_affine(invert_affine(m), crop_pts), pts, atol=1e-9)


@pytest.mark.parametrize("angle", [90.0, -60.0, 45.0, -90.0, 180.0])
def test_predict_image_maps_landmarks_of_a_rotated_face_back(angle):
    """A detection of a face rolled by `angle` (the eye keypoints' angle) with an oracle model:
    the landmarks come back rolled by `angle` in photo pixels, centred on the face."""
    pts = face_points(256, angle_deg=angle, shift=(40, 20)).astype(np.float64)
    det = Candidate(box_of(pts), 0.9, None, "test", None, angle)
    faces = predict_image(oracle_aligner(), np.zeros((400, 400, 3), np.uint8), [det], max_faces=4)
    assert len(faces) == 1
    got = faces[0].landmarks.astype(np.float64)
    d = np.deg2rad(roll_deg(got) - angle)
    assert abs(np.arctan2(np.sin(d), np.cos(d))) < np.deg2rad(0.5)
    # the oracle centres its face on the crop, i.e. on the detector box: the centre of a turned
    # face's axis-aligned box is within 10 % of the face size of its own centre
    np.testing.assert_allclose(got.mean(0), pts.mean(0), atol=0.1 * np.ptp(pts, 0).max())
    if angle % 90 == 0:  # the axis-aligned box of the turned face is the upright one: exact
        np.testing.assert_allclose(got, pts, atol=0.05)


# --- rejection -----------------------------------------------------------------------------------
def test_confidence_is_one_half_at_the_threshold_and_monotone():
    assert confidence_of(REJECT_RATIO) == pytest.approx(0.5)
    assert confidence_of(0.0) == 1.0 and confidence_of(float("nan")) == 0.0
    assert confidence_of(0.5 * REJECT_RATIO) > confidence_of(REJECT_RATIO) > confidence_of(2 * REJECT_RATIO)


def test_uncertainty_ratio_normalises_by_interocular_with_a_floor():
    pts = face_points(200).astype(np.float64)
    iod = np.linalg.norm(pts[36] - pts[45])
    assert uncertainty_ratio(pts, 2.0) == pytest.approx(2.0 / iod)
    squashed = pts.copy()
    squashed[45] = squashed[36] + 1e-3  # a profile: eyes on top of each other
    assert np.isfinite(uncertainty_ratio(squashed, 2.0)) and uncertainty_ratio(squashed, 2.0) < 2.0 / 10


def test_predict_image_rejects_uncertain_faces():
    pts = face_points(200, shift=(50, 50)).astype(np.float64)
    far = face_points(200, shift=(350, 50)).astype(np.float64)
    dets = [Detection(box_of(pts), 0.9), Detection(box_of(far), 0.8)]
    img = np.zeros((300, 600, 3), np.uint8)
    # crop units std 0.005 -> ~1 % of the eye distance: kept; 0.2 -> far above REJECT_RATIO: dropped
    sure = predict_image(oracle_aligner(0.005), img, dets, 8)
    assert len(sure) == 2 and all(f.confidence > 0.9 for f in sure)
    # (std per batch index: no turn search, whose batches hold several crops per face)
    unsure = predict_image(oracle_aligner(np.array([0.2, 0.005])), img, dets, 8, turn_search="none")
    assert len(unsure) == 1 and unsure[0].score == 0.8
    flagged = predict_image(oracle_aligner(np.array([0.2, 0.005])), img, dets, 8, min_confidence=0.0,
                            turn_search="none")
    assert len(flagged) == 2 and min(f.confidence for f in flagged) < 0.1


class DriftRunner(OracleRunner):
    """The template shifted sideways by `shift` crop units in every crop: each re-crop moves the face
    again, like a texture the model turns into a face (a real face is a fixed point of crop-predict)."""

    def __init__(self, shift: float):
        super().__init__()
        self.coords = self.coords + np.float32([shift, 0.0])


def test_drift_is_the_move_of_one_more_recrop_in_eye_distances():
    pts = face_points(200, shift=(50, 50)).astype(np.float64)
    img = np.zeros((300, 600, 3), np.uint8)
    assert drift(oracle_aligner(), img, pts[None])[0] < 1e-3  # a fixed point
    side = crop_from_box(landmark_box(pts))[2]  # one crop unit, in photo pixels
    moved = drift(SimpleNamespace(input_size=SIZE, runner=DriftRunner(0.05)), img, pts[None])[0]
    assert moved == pytest.approx(0.05 * side / error_scale(pts), rel=0.05)
    assert drift(oracle_aligner(), img, pts[:0].reshape(0, 68, 2)).shape == (0,)


def test_stability_check_drops_faces_that_drift_on_a_recrop():
    pts = face_points(200, shift=(50, 50)).astype(np.float64)
    dets = [Detection(box_of(pts), 0.9)]
    img = np.zeros((300, 600, 3), np.uint8)
    still = predict_image(oracle_aligner(), img, dets, 8)
    assert len(still) == 1  # the oracle's face is a fixed point: kept
    drifting = SimpleNamespace(input_size=SIZE, runner=DriftRunner(0.05))
    assert predict_image(drifting, img, dets, 8) == []
    assert len(predict_image(drifting, img, dets, 8, max_drift=None)) == 1  # check off
    assert len(predict_image(drifting, img, dets, 8, min_confidence=0.0)) == 1  # nothing rejected at 0
    assert len(predict_image(drifting, img, dets, 8, max_drift=10.0)) == 1  # a drift below the limit


def test_reject_ratio_per_model():
    assert reject_ratio_for("weights/sdfl_flagship.safetensors", {}) == REJECT_RATIO  # the default's
    assert reject_ratio_for("weights/sdfl_wasserstein.safetensors", {}) == 0.04
    assert reject_ratio_for("runs/x/best.safetensors", {"reject_ratio": 0.2}) == 0.2
    assert reject_ratio_for("runs/x/best.safetensors", {}) is None
    # the weights' own JSON wins over the table of weights saved before the key existed
    assert reject_ratio_for("weights/sdfl_flagship.safetensors", {"reject_ratio": 0.05}) == 0.05
    pts = face_points(200, shift=(50, 50)).astype(np.float64)
    faces = predict_image(oracle_aligner(0.3), np.zeros((300, 300, 3), np.uint8), [Detection(box_of(pts), 0.9)], 8,
                          reject_ratio=None)
    assert len(faces) == 1 and faces[0].confidence is None


def test_duplicate_candidates_of_one_face_merge():
    pts = face_points(200, shift=(50, 50)).astype(np.float64)
    b = box_of(pts)
    faces = predict_image(oracle_aligner(), np.zeros((300, 300, 3), np.uint8),
                          [Detection(b, 0.9), Detection(b + 8, 0.7)], 8)
    assert len(faces) == 1


# --- max_faces / truncated -----------------------------------------------------------------------
def _grid_dets(n):
    return [Detection(box_of(face_points(100, shift=(120 * i, 0)).astype(np.float64)), 0.9 - 0.01 * i)
            for i in range(n)]


def test_max_faces_truncates_and_says_so():
    img = np.zeros((120, 120 * 5, 3), np.uint8)
    three = predict_image(oracle_aligner(), img, _grid_dets(5), max_faces=3)
    assert isinstance(three, FaceList) and len(three) == 3 and three.truncated
    assert [round(f.score, 2) for f in three] == [0.9, 0.89, 0.88]
    five = predict_image(oracle_aligner(), img, _grid_dets(5), max_faces=5)
    assert len(five) == 5 and not five.truncated


class StubDetector:
    def __init__(self, dets):
        self.dets = dets

    def detect(self, rgb):
        return list(self.dets)


def test_face_aligner_max_faces_truncated_and_confidence(tiny_weights):
    from core.inference import FaceAligner

    img = np.zeros((120, 120 * 5, 3), np.uint8)
    fa = FaceAligner(tiny_weights, backend="torch", detector=StubDetector(_grid_dets(5)), max_faces=2,
                     min_confidence=0.0)
    assert fa.reject_ratio is None  # a model without a chosen threshold: no confidence, no rejection
    faces = fa.predict(img)
    assert len(faces) == 2 and faces.truncated and faces[0].to_dict()["confidence"] is None
    fa.reject_ratio = REJECT_RATIO
    d = fa.predict(img)[0].to_dict()
    assert 0.0 <= d["confidence"] <= 1.0 and len(d["landmarks"]) == 68
    fa5 = FaceAligner(tiny_weights, backend="torch", detector=StubDetector(_grid_dets(5)), max_faces=5,
                      min_confidence=0.0)
    assert not fa5.predict(img).truncated
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_faces"):
            FaceAligner(tiny_weights, backend="torch", max_faces=bad)
    with pytest.raises(ValueError, match="min_confidence"):
        FaceAligner(tiny_weights, backend="torch", min_confidence=1.5)


def test_user_boxes_are_never_rejected(tiny_weights):
    from core.inference import FaceAligner

    pts = face_points(128)
    fa = FaceAligner(tiny_weights, backend="torch", detector="none", min_confidence=1.0)
    faces = fa.predict(draw_face(pts, 128), boxes=[box_of(pts)])
    assert len(faces) == 1 and np.isfinite(faces[0].landmarks).all()


def test_cli_writes_truncated(tiny_weights, tmp_path, monkeypatch):
    import cv2

    from core import predict as cli

    img = np.zeros((120, 600, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "row.png"), img)
    import core.inference as inf

    orig = inf.FaceAligner.__init__

    def init(self, *a, **kw):
        kw["detector"] = StubDetector(_grid_dets(5))
        orig(self, *a, **kw)
    monkeypatch.setattr(inf.FaceAligner, "__init__", init)
    rc = cli.main([str(tmp_path / "row.png"), "--out", str(tmp_path / "out"), "--weights", str(tiny_weights),
                   "--backend", "torch", "--max-faces", "3", "--min-confidence", "0", "--no-annotate"])
    assert rc == 0
    info = json.loads((tmp_path / "out" / "row.json").read_text())
    assert len(info["faces"]) == 3 and info["truncated"] is True and "confidence" in info["faces"][0]


def test_app_truncation_hint():
    from app.faces_limit import truncation_fields, truncation_note

    some = FaceList([1, 2])
    assert truncation_fields(some) == {} and truncation_note(some, 2) == ""
    some.truncated = True
    assert truncation_fields(some) == {"truncated": True} and "2 most confident" in truncation_note(some, 2)
    assert truncation_fields([1]) == {}  # a plain list (boxes given, old aligners): nothing to say


class TopBrightOracle(OracleRunner):
    """Sure (std 0.005) of crops whose upper half is brighter than the lower half, unsure (0.1)
    otherwise: a model that only recognises faces the right way up."""

    def __call__(self, x):
        out = super().__call__(x)
        h = x.shape[2] // 2
        up = x[:, :, :h].mean((1, 2, 3)) > x[:, :, h:].mean((1, 2, 3))
        std = np.where(up, 0.005, 0.1).astype(np.float32)
        out["cov"] = out["cov"] / self.std ** 2 * std[:, None, None, None] ** 2
        return out


def test_turn_search_finds_the_upright_crop_of_a_face_on_its_side():
    """The detector says angle 0 (wrong eye keypoints) for a face whose top points to the image
    left (roll -90): the turn search keeps the crop the model is sure of."""
    img = np.zeros((300, 300, 3), np.uint8)
    img[:, :150] = 255  # bright on the face's top side
    pts = face_points(300, angle_deg=-90.0).astype(np.float64)
    aligner = SimpleNamespace(input_size=SIZE, runner=TopBrightOracle())
    det = [Candidate(box_of(pts), 0.9, None, "test", None, 0.0)]
    found = predict_image(aligner, img, det, 4, turn_search="always")
    assert abs(roll_deg(found[0].landmarks) + 90) < 1 and found[0].confidence > 0.9
    stuck = predict_image(aligner, img, det, 4, min_confidence=0.0, turn_search="none")
    assert abs(roll_deg(stuck[0].landmarks)) < 1 and stuck[0].confidence < 0.5


class ScriptedOracle(OracleRunner):
    """OracleRunner whose std follows a script, one entry per model call (scalar or per crop)."""

    def __init__(self, script):
        super().__init__()
        self.script = list(script)

    def __call__(self, x):
        self.std = self.script.pop(0)
        return super().__call__(x)


@pytest.mark.parametrize("second, turn, extra", [((0.02, 0.005), 180.0, [0.005]), ((0.005, 0.02), 0.0, [])])
def test_turn_search_decides_close_contenders_by_their_second_pass(second, turn, extra):
    """Pass 1 is as sure of the detector's angle as of the face turned 180 degrees (a face upside
    down with mirrored points can look as sure): both get a second pass, the surer one wins."""
    pts = face_points(300).astype(np.float64)
    # calls: pass 1, turns 90 / 180 / 270, one batch with the second pass of both contenders, and
    # for a turned face (roll above UPRIGHT_ABOVE_DEG) one more upright re-crop
    aligner = SimpleNamespace(input_size=SIZE,
                              runner=ScriptedOracle([0.01, 0.05, 0.011, 0.05, np.array(second)] + extra))
    det = [Candidate(box_of(pts), 0.9, None, "test", None, 0.0)]
    found = predict_image(aligner, np.zeros((300, 300, 3), np.uint8), det, 4, min_confidence=0.0)
    d = roll_deg(found[0].landmarks) - turn
    assert abs(np.degrees(np.arctan2(np.sin(np.radians(d)), np.cos(np.radians(d))))) < 1
    assert not aligner.runner.script  # the second pass is not run twice, an upright face gets no third
