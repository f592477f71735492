"""core.evaluate on a synthetic split with the tiny fixture weights."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import torch

from core.checkpoint import save_weights
from core.config import ModelConfig
from core.data import load_jsonl, normalized_shapes
from core.evaluate import MirrorEnsemble, evaluate, main
from core.landmarks import MIRROR_PERMUTATION
from core.metrics import calibration
from core.graph import neighbourhood
from core.models import build_model
from synth_faces import write_split

from conftest import TINY_CONFIG, synthetic_shapes


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faces68_eval")
    write_split(root, n=5, split="test", max_angle=20, seed=5)
    return root


def _run(tmp_path, data_root, weights, *extra, name="out.json") -> dict:
    out = tmp_path / name
    rc = main(["--data", str(data_root), "--split", "test", "--weights", str(weights), "--json", str(out), *extra])
    assert rc == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def default_result(tmp_path_factory, data_root, tiny_weights) -> dict:
    return _run(tmp_path_factory.mktemp("eval"), data_root, tiny_weights)


def test_json_fields(default_result):
    r = default_result
    assert r["n"] == 5 and r["split"] == "test" and r["protocol"] == "default" and r["seed"] is None
    for k in ("nme", "fr10", "auc10", "nme_normal", "nme_tangent"):
        assert isinstance(r[k], float) and np.isfinite(r[k]), k
    # fractions, not percent
    assert 0 < r["nme"] < 1 and 0 <= r["fr10"] <= 1 and 0 <= r["auc10"] <= 1
    assert 0 < r["nme_normal"] < 1 and 0 < r["nme_tangent"] < 1
    assert len(r["nme_per_landmark"]) == 68 and len(r["nme_per_face"]) == 5
    assert r["nme"] == pytest.approx(np.mean(r["nme_per_face"]))
    assert r["nme"] == pytest.approx(np.mean(r["nme_per_landmark"]))
    assert r["fr10"] == pytest.approx(np.mean(np.array(r["nme_per_face"]) > 0.10))
    lfr = r["landmark_failure_rate"]
    assert sorted(lfr) == ["0.08", "0.10", "0.15", "0.20"]
    assert all(len(v) == 68 and all(0 <= x <= 1 for x in v) for v in lfr.values())
    assert all(a >= b for a, b in zip(lfr["0.08"], lfr["0.20"]))
    assert r["input_size"] == 64 and r["crop_scale"] == 1.3 and r["model"]["head"] == "graph"
    assert r["train_data"] == "synthetic"
    cal = r["calibration"]
    assert 0 <= cal["inside_1sigma"] <= cal["inside_2sigma"] <= 1
    assert cal["ideal_1sigma"] == pytest.approx(0.393, abs=1e-3)


def test_fc_weights_and_library_call(data_root, tiny_fc_weights):
    r = evaluate(tiny_fc_weights, data_root, "test")
    assert r["n"] == 5 and r["model"]["head"] == "fc" and len(r["nme_per_landmark"]) == 68
    recs = load_jsonl(Path(data_root) / "test.jsonl")[1:3]  # a part of the split (unseen.py --holdout)
    part = evaluate(tiny_fc_weights, data_root, "test", records=recs)
    assert part["n"] == 2 and part["nme_per_face"] == pytest.approx(r["nme_per_face"][1:3], abs=1e-6)


def test_predictions_mapped_back_to_image_pixels(tmp_path):
    """A model that outputs exactly the faces' canonical-crop shape must score ~0 NME once its
    crop-unit predictions are mapped back to the stored image's pixels (and its 1-sigma
    ellipses, mapped the same way, must hold every point)."""
    root = tmp_path / "d"
    write_split(root, n=3, split="test", noise=0.0)  # same shape up to scale and shift
    shapes = normalized_shapes(load_jsonl(root / "test.jsonl"), 64)
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY_CONFIG), neighbourhood(synthetic_shapes(32), 3), shapes.mean(0))
    torch.nn.init.zeros_(model.head.out.weight)  # coords = mean shape exactly
    save_weights(tmp_path / "exact", model.eval())
    r = evaluate(tmp_path / "exact.safetensors", root, "test")
    assert r["nme"] < 2e-3 and r["fr10"] == 0.0 and r["auc10"] > 0.98
    assert r["calibration"]["inside_1sigma"] == 1.0
    # the mirror ensemble maps the mirrored crop's (symmetric) prediction back onto the same pixels
    m = evaluate(tmp_path / "exact.safetensors", root, "test", mirror=True)
    assert m["nme"] < 2e-3 and m["mirror_ensemble"] and m["calibration"]["inside_1sigma"] == 1.0


def test_mirror_ensemble_is_mirror_equivariant():
    """E(flip x) = m(E(x)) for any model: the ensemble's answer on a mirrored crop is its answer on the
    crop, mirrored (u -> (S - 1) / S - u, roles swapped); covariances likewise."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY_CONFIG), neighbourhood(synthetic_shapes(32), 3),
                        synthetic_shapes(32).mean(0)).eval()
    ens = MirrorEnsemble(model)
    x = torch.rand(2, 3, model.cfg.input_size, model.cfg.input_size)
    with torch.inference_mode():
        a, b = ens(x), ens(torch.flip(x, dims=[-1]))
    size, perm = model.cfg.input_size, torch.as_tensor(MIRROR_PERMUTATION)
    want = torch.empty_like(a["coords"])
    c = a["coords"].clone()
    c[..., 0] = (size - 1) / size - c[..., 0]
    want[:, perm] = c
    assert torch.allclose(b["coords"], want, atol=1e-5)
    if "cov" in a:
        assert torch.allclose(b["cov"][:, perm, 0, 0], a["cov"][..., 0, 0], atol=1e-6)
        assert torch.allclose(b["cov"][:, perm, 0, 1], -a["cov"][..., 0, 1], atol=1e-6)


def test_occlusion_is_reproducible(tmp_path, data_root, tiny_weights, default_result):
    a = _run(tmp_path, data_root, tiny_weights, "--occlusion", "7", name="a.json")
    b = _run(tmp_path, data_root, tiny_weights, "--occlusion", "7", name="b.json")
    c = _run(tmp_path, data_root, tiny_weights, "--occlusion", "8", name="c.json")
    assert a["protocol"] == "occlusion" and a["seed"] == 7
    assert a["nme_per_face"] == b["nme_per_face"] and a["nme_per_landmark"] == b["nme_per_landmark"]
    assert a["nme_per_face"] != c["nme_per_face"]
    assert a["nme_per_face"] != default_result["nme_per_face"]


@pytest.mark.parametrize("protocol, seed", [("blur", 3), ("camera", 2)])
def test_blur_and_camera_protocols_are_reproducible(tmp_path, data_root, tiny_weights, default_result, protocol, seed):
    a = _run(tmp_path, data_root, tiny_weights, f"--{protocol}", str(seed), name="a.json")
    b = _run(tmp_path, data_root, tiny_weights, f"--{protocol}", str(seed), name="b.json")
    assert a["protocol"] == protocol and a["seed"] == seed and a["n"] == 5
    assert a["nme_per_face"] == b["nme_per_face"]
    assert a["nme_per_face"] != default_result["nme_per_face"]


def test_occlusion_and_blur_are_exclusive(tmp_path, data_root, tiny_weights):
    with pytest.raises(SystemExit) as e:
        main(["--data", str(data_root), "--weights", str(tiny_weights), "--occlusion", "1", "--blur", "1"])
    assert e.value.code == 2


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".html", b"<html")])
def test_ced_plot_written(tmp_path, data_root, tiny_weights, suffix, magic):
    path = tmp_path / f"ced{suffix}"
    assert main(["--data", str(data_root), "--split", "test", "--weights", str(tiny_weights),
                 "--ced", str(path)]) == 0
    assert path.is_file() and path.stat().st_size > 1000
    assert magic in path.read_bytes()[:200]


def test_missing_weights_exit_2(tmp_path, data_root, capsys):
    assert main(["--data", str(data_root), "--split", "test", "--weights", str(tmp_path / "none.safetensors"),
                 "--json", str(tmp_path / "o.json")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_readout_on_a_coordinate_head_exit_2(data_root, tiny_weights, capsys):
    assert main(["--data", str(data_root), "--split", "test", "--weights", str(tiny_weights),
                 "--readout", "get_bc"]) == 2
    assert "heatmap and hybrid heads" in capsys.readouterr().err


def test_missing_split_exit_2(tmp_path, data_root, tiny_weights, capsys):
    assert main(["--data", str(data_root), "--split", "val", "--weights", str(tiny_weights)]) == 2
    assert "val.jsonl" in capsys.readouterr().err


def test_calibration_known_values():
    gt = np.zeros((1, 4, 2))
    pred = np.array([[[0.5, 0.0], [1.5, 0.0], [0.0, 3.0], [0.0, 0.0]]])
    cov = np.tile(np.eye(2), (1, 4, 1, 1))
    cal = calibration(pred, gt, cov)
    assert cal["inside_1sigma"] == 0.5 and cal["inside_2sigma"] == 0.75


def test_bench_speed_gpu_mode_without_cuda_says_so(capsys, tmp_path):
    from core import bench_speed

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert bench_speed.main(["--json", str(tmp_path / "s.json"), "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "s.json").exists()


def test_bench_speed_several_weights_need_a_gpu(tmp_path):
    from core import bench_speed

    with pytest.raises(SystemExit) as e:
        bench_speed.main(["--json", str(tmp_path / "s.json"), "--weights", "a.safetensors", "b.safetensors"])
    assert e.value.code == 2


def test_hidden_points_are_those_the_occluder_paints_black():
    from core.protocols import face_rng, hidden_points, occlude

    pts = np.random.default_rng(0).uniform(40, 150, (68, 2))
    covered = 0
    for seed in range(5):
        painted = occlude(np.full((192, 192, 3), 255, np.uint8), pts, face_rng(seed, 3))
        xy = np.round(pts).astype(int)
        hidden = hidden_points(192, pts, face_rng(seed, 3))
        np.testing.assert_array_equal(hidden, painted[xy[:, 1], xy[:, 0], 0] == 0)
        covered += hidden.sum()
    assert 0 < covered < 5 * 68


def test_protocol_hidden_marks_the_landmarks_the_occluded_crops_paint_black(data_root):
    from core.evaluate import protocol_crops, protocol_hidden
    from core.landmarks import apply_affine

    records = load_jsonl(data_root / "test.jsonl")
    hidden = protocol_hidden(records, 64, occlusion=3)
    assert hidden.shape == (len(records), 68) and 0 < hidden.sum() < hidden.size
    pairs = zip(protocol_crops(records, 64, occlusion=3), protocol_crops(records, 64))
    for i, ((crop, m), (clean, _)) in enumerate(pairs):
        xy = np.clip(np.round(apply_affine(m, records[i].landmarks)).astype(int), 0, 63)
        not_black_before = (clean[xy[:, 1], xy[:, 0]] != 0).any(-1)
        black_now = (crop[xy[:, 1], xy[:, 0]] == 0).all(-1)
        np.testing.assert_array_equal(hidden[i] & not_black_before, black_now & not_black_before)


def test_the_shape_prior_the_json_names_is_applied_unless_refused(tmp_path, data_root, tiny_weights):
    """evaluate() scores a model as FaceAligner runs it: with the shape prior its JSON names
    (core.shape_prior), recorded in the result; --no-shape-prior scores the raw points."""
    from conftest import link_prior
    from core.shape_prior import ShapePrior

    linked = link_prior(tiny_weights, tmp_path)
    prior = ShapePrior.load(tmp_path / "prior.json")
    on = _run(tmp_path, data_root, linked, name="on.json")
    off = _run(tmp_path, data_root, linked, "--no-shape-prior", name="off.json")
    plain = _run(tmp_path, data_root, tiny_weights, name="plain.json")
    assert on["shape_prior"] == prior.info and off["shape_prior"] is None and plain["shape_prior"] is None
    assert off["nme_per_face"] == pytest.approx(plain["nme_per_face"], abs=1e-7)
    assert on["nme_per_face"] != pytest.approx(off["nme_per_face"], abs=1e-5)


def test_camera_protocol_is_one_protocol_at_a_time(data_root, tiny_weights):
    with pytest.raises(SystemExit):
        main(["--data", str(data_root), "--weights", str(tiny_weights), "--camera", "1", "--blur", "1"])
    with pytest.raises(ValueError, match="one protocol"):
        evaluate(tiny_weights, data_root, occlusion=1, camera=1)
