"""core.shape_prior: the point distribution model, its MAP fusion with the model's Gaussians, and where
the pipeline applies it (FaceAligner, core.evaluate)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import link_prior, synthetic_shapes
from core.shape_prior import ShapePrior, ShapePriorRunner, prior_for

N = 68
ASTRONAUT = Path(__file__).resolve().parent.parent / "app" / "examples" / "astronaut.jpg"


def _shapes(n=400, seed=0):
    """Faces with two real modes of variation (mouth opening, face width) under random similarities."""
    rng = np.random.default_rng(seed)
    base = synthetic_shapes(n, seed).astype(np.float64)
    mouth = np.zeros((N, 2))
    mouth[57:60, 1] = mouth[65:68, 1] = 0.04
    width = np.zeros((N, 2))
    width[:17, 0] = np.linspace(-0.05, 0.05, 17)
    return base + rng.normal(0, 1, (n, 1, 1)) * mouth + rng.normal(0, 1, (n, 1, 1)) * width


def _sim(points, scale, angle, shift):
    r = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
    return points @ r.T + shift, r


@pytest.fixture(scope="module")
def prior():
    return ShapePrior.fit(_shapes())


def test_fit_finds_a_unit_mean_and_orthonormal_modes(prior):
    assert prior.mean.shape == (N, 2) and np.allclose(prior.mean.mean(0), 0, atol=1e-9)
    assert np.isclose((prior.mean ** 2).sum(), 1.0)
    flat = prior.modes.reshape(len(prior.variances), -1)
    assert np.allclose(flat @ flat.T, np.eye(len(flat)), atol=1e-8)
    assert np.all(np.diff(prior.variances) <= 0) and prior.info["faces"] == 400 and prior.info["mirror"]


def test_a_point_the_model_is_unsure_of_follows_the_others(prior):
    truth = _shapes(1, seed=7)[0]
    cov = np.tile(np.eye(2) * 0.002 ** 2, (N, 1, 1))
    pred = truth.copy()
    pred[8] += [0.08, -0.06]  # the chin tip, pushed off by an "occluder" ...
    cov[8] = np.eye(2) * 0.05 ** 2  # ... and the model says it is unsure there
    out = prior.refine(pred[None], cov[None])[0]
    assert np.linalg.norm(out[8] - truth[8]) < 0.25 * np.linalg.norm(pred[8] - truth[8])
    others = np.delete(np.arange(N), 8)
    assert np.abs(out[others] - truth[others]).max() < 0.01  # confident points stay put


def test_confidently_wrong_points_are_kept_by_their_weight(prior):
    """The same displaced chin with a tight covariance: the fit follows it (the prior is weighed
    against the model's confidence, not imposed)."""
    truth = _shapes(1, seed=7)[0]
    cov = np.tile(np.eye(2) * 0.002 ** 2, (N, 1, 1))
    pred = truth.copy()
    pred[8] += [0.08, -0.06]
    out = prior.refine(pred[None], cov[None])[0]
    assert np.linalg.norm(out[8] - pred[8]) < 0.5 * np.linalg.norm(pred[8] - truth[8])


def test_refine_is_equivariant_to_similarities(prior):
    rng = np.random.default_rng(3)
    pred = _shapes(2, seed=11) + rng.normal(0, 0.01, (2, N, 2))
    cov = np.einsum("bnij,bnkj->bnik", *(2 * [rng.normal(0, 0.01, (2, N, 2, 2))])) + 1e-5 * np.eye(2)
    moved, r = _sim(pred, 3.0, 0.4, [10.0, -4.0])
    moved_cov = 9.0 * np.einsum("ij,bnjk,lk->bnil", r / 3.0, cov, r / 3.0)
    assert np.allclose(prior.refine(moved, moved_cov), _sim(prior.refine(pred, cov), 3.0, 0.4, [10.0, -4.0])[0],
                       atol=1e-6)


def test_bad_faces_pass_through_unchanged_and_bad_shapes_are_refused(prior):
    pred = _shapes(3, seed=2).astype(np.float32)
    cov = np.tile(np.eye(2) * 1e-4, (3, N, 1, 1)).astype(np.float32)
    cov[1, 5] = [[1e-4, 0], [0, -1e-4]]  # not positive definite
    pred[2, 3] = np.nan
    out = prior.refine(pred, cov)
    assert out.dtype == np.float32 and np.array_equal(out[1], pred[1])
    assert np.array_equal(out[2], pred[2], equal_nan=True) and not np.array_equal(out[0], pred[0])
    with pytest.raises(ValueError, match="do not match"):
        prior.refine(pred[:, :60], cov[:, :60])


def test_save_load_round_trip_and_clear_errors(prior, tmp_path):
    path = tmp_path / "prior.json"
    prior.save(path)
    back = ShapePrior.load(path)
    assert back.info == prior.info and np.allclose(back.modes, prior.modes, atol=1e-6)
    pred = _shapes(2, seed=5)
    cov = np.tile(np.eye(2) * 1e-4, (2, N, 1, 1))
    assert np.allclose(back.refine(pred, cov), prior.refine(pred, cov), atol=1e-5)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not a shape prior"):
        ShapePrior.load(tmp_path / "bad.json")
    d = json.loads(path.read_text())
    d["variances"] = d["variances"][:-1]
    (tmp_path / "short.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="inconsistent"):
        ShapePrior.load(tmp_path / "short.json")


class _Runner:
    outputs = ["coords", "adjacency", "cov"]

    def __call__(self, x):
        pts = np.tile(synthetic_shapes(1)[0], (len(x), 1, 1))
        pts[:, 8] += 0.1
        cov = np.tile(np.eye(2, dtype=np.float32) * 1e-5, (len(x), N, 1, 1))
        cov[:, 8] *= 1e4
        return {"coords": pts, "adjacency": np.zeros((len(x), N, N), np.float32), "cov": cov}


def test_runner_moves_only_the_coordinates(prior):
    raw = _Runner()(np.zeros((2, 3, 8, 8), np.float32))
    out = ShapePriorRunner(_Runner(), prior)(np.zeros((2, 3, 8, 8), np.float32))
    assert np.array_equal(out["cov"], raw["cov"]) and np.array_equal(out["adjacency"], raw["adjacency"])
    assert np.abs(out["coords"][:, 8] - raw["coords"][:, 8]).max() > 0.05


def test_face_aligner_applies_the_prior_its_json_names(tiny_heatmap_weights, tmp_path, astronaut):
    from core.inference import FaceAligner

    linked = link_prior(tiny_heatmap_weights, tmp_path)
    prior = ShapePrior.load(tmp_path / "prior.json")
    assert prior_for(tiny_heatmap_weights, json.loads(tiny_heatmap_weights.with_suffix(".json").read_text())) is None
    on = FaceAligner(linked, backend="torch", detector="none")
    off = FaceAligner(linked, backend="torch", detector="none", shape_prior=False)
    assert isinstance(on.runner, ShapePriorRunner) and on.shape_prior.info == prior.info
    assert off.shape_prior is None and not isinstance(off.runner, ShapePriorRunner)
    x = np.random.default_rng(0).random((2, 3, on.input_size, on.input_size), dtype=np.float32)
    raw, fused = off.runner(x), on.runner(x)
    assert np.allclose(fused["coords"], prior.refine(raw["coords"], raw["cov"]), atol=1e-6)
    assert np.array_equal(fused["cov"], raw["cov"]) and np.array_equal(fused["coords_raw"], raw["coords"])
    box = np.array([[150, 120, 360, 380]], np.float32)
    face = on.predict(astronaut, boxes=box)[0]
    assert np.isfinite(face.landmarks).all() and face.covariance is not None
    # the model's own points of the same pass come with the face (the occlusion tab draws the prior's moves
    # from them: test_occlusion_shape_prior_switch); this untrained model's collapsed points pass unmoved
    assert face.raw_landmarks.shape == (68, 2) and np.isfinite(face.raw_landmarks).all()
    assert off.predict(astronaut, boxes=box)[0].raw_landmarks is None
    big = face.to_file_pixels(2.0)
    assert np.allclose(big.raw_landmarks, 2.0 * (face.raw_landmarks + 0.5) - 0.5, atol=1e-4)


def test_a_missing_prior_file_is_a_clear_error(tiny_heatmap_weights, tmp_path):
    from core.inference import FaceAligner

    linked = link_prior(tiny_heatmap_weights, tmp_path)
    (tmp_path / "prior.json").unlink()
    with pytest.raises(ValueError, match="prior.json: not a shape prior"):
        FaceAligner(linked, backend="torch", detector="none")


def test_occlusion_shape_prior_switch(tiny_weights, tiny_fc_weights, tmp_path):
    """With a shape prior named in the models' JSON the occlusion demo runs both models with it and
    draws where it moved each point (PRIOR_COLOR lines, from each face's raw_landmarks of the same pass);
    switched off, it runs the raw models (the same weights without the prior) and draws no such line."""
    from app.tabs.occlusion import PRIOR_COLOR
    from app.ui import LandmarkApp, load_models

    tall = synthetic_shapes(64) * [1.0, 1.4]  # faces longer than the tiny models' mean shape: the prior moves points
    linked = [link_prior(w, tmp_path, tall) for w in (tiny_weights, tiny_fc_weights)]
    models = load_models(*linked, webcam_slots=1)
    assert models.graph.shape_prior is not None and models.graph_raw.shape_prior is None
    app = LandmarkApp(models, results_dir=tmp_path)
    args = (str(ASTRONAUT), "box", 0.5, 0.7, 0.6, 0.3, 0, 3, "gray", None, None)
    on, off = app.run_occlusion(*args, True), app.run_occlusion(*args, False)
    assert "shape prior on" in on[5] and "shape prior off" in off[5]
    assert on[-1]["key"] != off[-1]["key"]  # clean predictions cached per setting
    assert not np.allclose(on[-1]["graph"][0]["landmarks"], off[-1]["graph"][0]["landmarks"])

    def prior_pixels(img):
        return int(np.all(np.abs(img.astype(int) - PRIOR_COLOR) <= 30, axis=-1).sum())

    assert prior_pixels(on[0]) > 20 and prior_pixels(off[0]) < prior_pixels(on[0]) / 4
    faces = models.graph.predict(np.asarray(on[-1]["image"]), boxes=on[-1]["boxes"])
    assert np.abs(faces[0].raw_landmarks - faces[0].landmarks).max() > 1.0  # what the lines are drawn from


def test_point_offsets_move_the_map_points_last_in_each_faces_frame(prior, tmp_path):
    """A model's "point_offsets" (core.calibrate) come with its prior: refine gives the MAP points moved by
    d R^T o_i (the face's own frame and scale, so turned and scaled faces move alike); offsets that do not
    fit the prior are refused."""
    from core.metrics import in_convention

    o = np.random.default_rng(1).normal(0, 0.02, (N, 2))
    pts = synthetic_shapes(3, seed=5).astype(np.float64) * 200 + 40
    cov = np.tile(np.eye(2), (3, N, 1, 1)) * 4.0
    withoff = ShapePrior(prior.mean, prior.modes, prior.variances, prior.info, offsets=o)
    assert np.allclose(withoff.refine(pts, cov), in_convention(prior.refine(pts, cov), o), atol=1e-9)
    turned, r = _sim(pts[0], 1.7, 0.6, np.array([30.0, -10.0]))
    cov_t = np.einsum("ij,njk,lk->nil", r, cov[0], r)
    moved_then_turned = _sim(withoff.refine(pts[:1], cov[:1])[0], 1.7, 0.6, np.array([30.0, -10.0]))[0]
    assert np.allclose(withoff.refine(turned[None], cov_t[None])[0], moved_then_turned, atol=1e-4)
    collapsed = withoff.refine(np.full((1, N, 2), 5.0), cov[:1])  # an untrained model's points: no eye line
    assert np.allclose(collapsed, prior.refine(np.full((1, N, 2), 5.0), cov[:1]), atol=1e-6)
    for bad in (o[:10], np.full((N, 2), np.nan)):
        with pytest.raises(ValueError, match="offsets"):
            ShapePrior(prior.mean, prior.modes, prior.variances, offsets=bad)
    prior.save(tmp_path / "p.json")
    meta = {"shape_prior": "p.json", "point_offsets": o.tolist()}
    assert np.allclose(prior_for(tmp_path / "w.safetensors", meta).offsets, o)
    assert prior_for(tmp_path / "w.safetensors", {"shape_prior": "p.json"}).offsets is None
