"""Landmark metrics against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest

from core.metrics import (FAILURE_THRESHOLDS, auc, ced, convention_offsets, face_frame, failure_rate,
                          in_convention, interocular, landmark_errors, landmark_failure_rates, nme,
                          normal_tangent_nme, summarize)
from synth_faces import face_points


def _gt(n=4) -> np.ndarray:
    return np.stack([face_points(200, angle_deg=a, scale=s) for a, s in zip(np.linspace(-30, 30, n),
                                                                           np.linspace(0.8, 1.1, n))]).astype(np.float64)


def test_interocular_is_outer_eye_corner_distance():
    gt = _gt()
    assert np.allclose(interocular(gt), np.linalg.norm(gt[:, 36] - gt[:, 45], axis=-1))
    frontal = face_points(200)[None].astype(np.float64)
    assert interocular(frontal)[0] == pytest.approx((0.74 - 0.26) * 0.7 * 200, rel=1e-5)


def test_constant_offset_of_5_percent_interocular():
    gt = _gt()
    io = interocular(gt)
    direction = np.array([0.6, 0.8])
    pred = gt + 0.05 * io[:, None, None] * direction
    assert np.allclose(nme(pred, gt), 0.05)
    assert np.allclose(landmark_errors(pred, gt), 0.05)


def test_nme_per_face_hand_computed():
    gt = _gt(2)
    io = interocular(gt)
    pred = gt.copy()
    pred[0, 10] += [3 * io[0] / 10, 4 * io[0] / 10]  # error 0.5 io on one point of face 0
    pred[1, :34, 0] += 0.02 * io[1]  # half of the points of face 1 by 0.02 io
    assert nme(pred, gt) == pytest.approx([0.5 / 68, 0.01])
    assert nme(gt, gt) == pytest.approx([0.0, 0.0])


def test_failure_rate_is_strictly_greater():
    nmes = [0.05, 0.10, 0.1000001, 0.2]
    assert failure_rate(nmes, 0.10) == 0.5
    assert failure_rate(nmes, 0.2) == 0.0
    assert failure_rate(nmes, 0.0) == 1.0
    assert failure_rate([0.08, 0.09], 0.08) == 0.5


def test_ced_hand_computed():
    x, y = ced([0.02, 0.04, 0.04, 0.2], threshold=0.10, steps=11)
    assert np.allclose(x, np.linspace(0, 0.1, 11))
    assert np.allclose(y, [0, 0, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75, 0.75, 0.75, 0.75])  # <= x inclusive


def test_auc_values():
    assert auc(np.zeros(10)) == pytest.approx(1.0, abs=1e-3)
    assert auc(np.full(10, 0.05)) == pytest.approx(0.5, abs=1e-3)
    assert auc(np.full(10, 0.2)) == 0.0
    assert auc([0.0, 0.2]) == pytest.approx(0.5, abs=1e-3)
    assert auc([0.025, 0.075]) == pytest.approx(0.5 * 0.75 + 0.5 * 0.25, abs=1e-3)
    # threshold 0.08: all-0.04 errors -> 0.5
    assert auc(np.full(3, 0.04), threshold=0.08) == pytest.approx(0.5, abs=1e-3)


def test_landmark_failure_rates():
    gt = _gt(4)
    io = interocular(gt)
    pred = gt.copy()
    # point 0: errors 0.05, 0.09, 0.12, 0.25 io on the four faces
    for f, e in enumerate((0.05, 0.09, 0.12, 0.25)):
        pred[f, 0, 1] += e * io[f]
    pred[:, 1, 0] += 0.09 * io  # point 1: 0.09 on every face
    r = landmark_failure_rates(pred, gt)
    assert sorted(r) == ["0.08", "0.10", "0.15", "0.20"]
    assert [r[k][0] for k in ("0.08", "0.10", "0.15", "0.20")] == pytest.approx([0.75, 0.5, 0.25, 0.25])
    assert r["0.08"][1] == 1.0 and r["0.15"][1] == 0.0
    assert all(len(v) == 68 for v in r.values())
    assert all(r[k][5] == 0.0 for k in r)
    assert tuple(float(k) for k in r) == FAILURE_THRESHOLDS


def test_normal_tangent_on_straight_curve():
    gt = face_points(200)[None].astype(np.float64)
    io = interocular(gt)[0]
    # nose bridge 27-30 is vertical in the frontal template: x is its normal, y its tangent
    assert np.allclose(gt[0, 27:31, 0], gt[0, 27, 0])
    pred = gt.copy()
    pred[0, 28, 0] += 0.34 * io  # pure normal error
    nn_, nt_ = normal_tangent_nme(pred, gt)
    assert nn_ == pytest.approx(0.34 / 68)
    assert nt_ == pytest.approx(0.0, abs=1e-12)
    pred = gt.copy()
    pred[0, 29, 1] -= 0.34 * io  # pure tangent error
    nn_, nt_ = normal_tangent_nme(pred, gt)
    assert nn_ == pytest.approx(0.0, abs=1e-12)
    assert nt_ == pytest.approx(0.34 / 68)


def test_normal_tangent_diagonal_error_splits():
    gt = face_points(200)[None].astype(np.float64)
    io = interocular(gt)[0]
    pred = gt.copy()
    pred[0, 28] += np.array([3.0, 4.0]) / 5 * 0.1 * io  # 0.06 normal, 0.08 tangent
    nn_, nt_ = normal_tangent_nme(pred, gt)
    assert nn_ == pytest.approx(0.06 / 68)
    assert nt_ == pytest.approx(0.08 / 68)


def test_summarize_fields():
    gt = _gt(5)
    io = interocular(gt)
    pred = gt + (np.array([0.02, 0.04, 0.06, 0.12, 0.3]) * io)[:, None, None] * np.array([1.0, 0.0])
    s = summarize(pred, gt)
    assert s["n"] == 5
    assert s["nme"] == pytest.approx(np.mean([0.02, 0.04, 0.06, 0.12, 0.3]))
    assert s["fr10"] == pytest.approx(0.4)
    assert s["auc10"] == pytest.approx((0.8 + 0.6 + 0.4) / 5, abs=1e-3)
    assert len(s["nme_per_landmark"]) == 68 and len(s["nme_per_face"]) == 5
    assert s["nme_per_face"] == pytest.approx([0.02, 0.04, 0.06, 0.12, 0.3])
    assert 0 <= s["nme_normal"] <= s["nme"] + 1e-12 and 0 <= s["nme_tangent"] <= s["nme"] + 1e-12
    # each point's error splits into normal and tangent parts: n^2 + t^2 = e^2 per point
    assert s["nme_normal"] + s["nme_tangent"] >= s["nme"] - 1e-9


def test_ellipse_growth_medians_marked_and_other_points():
    from core.metrics import ellipse_growth

    clean = np.tile(np.eye(2) * 4.0, (2, 3, 1, 1))  # sigma = sqrt(8) everywhere
    changed = clean.copy()
    changed[:, 0] *= 9.0  # point 0: 3x the sigma
    mask = np.zeros((2, 3), bool)
    mask[:, 0] = True
    g = ellipse_growth(clean, changed, mask)
    assert g["marked"] == pytest.approx(3.0) and g["others"] == pytest.approx(1.0)
    assert np.isnan(ellipse_growth(clean, changed, np.zeros((2, 3), bool))["marked"])


def test_face_frame_turns_the_eye_line_onto_x():
    gt = _gt()
    r, d = face_frame(gt)
    eye = np.einsum("fij,fj->fi", r, gt[:, 45] - gt[:, 36])
    assert np.allclose(eye[:, 1], 0, atol=1e-9) and np.allclose(eye[:, 0], d) and np.allclose(d, interocular(gt))
    assert np.allclose(np.linalg.det(r), 1.0)


def test_convention_offsets_recovered_on_turned_and_scaled_faces():
    """Labels that put every point o_i (face frame, inter-ocular units) away from a model's points, on faces
    turned by -30..30 degrees and scaled 0.8..1.1: the offsets are recovered, and moving another set
    of faces by them brings their NME from |o| to 0."""
    rng = np.random.default_rng(0)
    o = rng.normal(0, 0.03, (68, 2))
    o[[36, 45]] = 0  # labels that keep the eye corners keep the face frame
    fit, held = _gt(6), _gt(4) + 7.0
    labels = in_convention(fit, o)
    assert np.allclose(convention_offsets(fit, labels), o, atol=1e-9)
    moved = in_convention(held, convention_offsets(fit, labels))
    assert np.allclose(nme(held, in_convention(held, o)), np.linalg.norm(o, axis=1).mean(), rtol=1e-6)
    assert np.allclose(nme(moved, in_convention(held, o)), 0, atol=1e-9)
