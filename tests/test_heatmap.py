"""Heatmap family: the heatmap and hybrid heads, their training step, checkpoints and ONNX export
(targets, read-outs and losses: test_heatmap_targets.py). Tiny and CPU-only."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from core.checkpoint import load_model, save_weights, stem_paths
from core.config import ConfigError, LossConfig, ModelConfig, TrainConfig, from_dict, load_config, to_dict
from core.graph import neighbourhood
from core.heatmap_losses import heatmap_loss_parts
from core.heatmaps import gaussian_log_heatmaps, get_bc, get_max, heatmap_to_crop
from core.landmarks import CURVES, NUM_LANDMARKS, curve_edges
from core.models import build_model
from core.train import compute_loss

from conftest import TINY_CONFIG, synthetic_shapes

torch.set_num_threads(1)
CURVE_NAMES = list(CURVES)


def _log_gauss(x, y, h, w, sigma=1.5):
    """(1, h, w) log-Gaussian centred at heatmap pixel (x, y)."""
    return gaussian_log_heatmaps(torch.tensor([[[x, y]]], dtype=torch.float32), h, w, sigma)[0]


def _model(head="heatmap", shapes=None, **kw):
    shapes = synthetic_shapes() if shapes is None else shapes
    cfg = ModelConfig(**{**TINY_CONFIG, "head": head, **kw})
    return build_model(cfg, neighbourhood(shapes, cfg.k), shapes.mean(0))


# ------------------------------------------------------------------------------------------ configs
def test_config_defaults_leave_graph_configs_unchanged():
    m, lc = ModelConfig(), LossConfig()
    assert m.head == "graph" and m.heatmap_stride == 4 and m.readout == "soft_argmax"
    assert lc.heatmap == "awing" and lc.heatmap_sigma == 1.5
    for bad in ({"heatmap_sigma": 2.0}, {"heatmap": "l1"}, {"heatmap_weight": -1.0}):
        with pytest.raises(ConfigError):
            from_dict(LossConfig, bad)
    for bad in ({"heatmap_stride": 16}, {"readout": "argmax"}, {"head": "heatmap", "num_landmarks": 5, "k": 2}):
        with pytest.raises(ConfigError):
            from_dict(ModelConfig, bad)
    assert from_dict(LossConfig, {"heatmap_sigma": 3}).heatmap_sigma == 3.0
    # a checkpoint's model dict written before these fields existed reads back as today's defaults
    old = {k: v for k, v in to_dict(ModelConfig()).items() if k not in ("heatmap_stride", "readout")}
    assert to_dict(from_dict(ModelConfig, old)) == to_dict(ModelConfig())


@pytest.mark.parametrize("name,head,loss", [("heatmap_awing", "heatmap", "awing"),
                                            ("heatmap_wasserstein", "heatmap", "wasserstein"),
                                            ("hybrid", "hybrid", "awing")])
def test_shipped_heatmap_configs_load(name, head, loss):
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parent.parent / "configs" / f"{name}.yaml")
    assert cfg.model.head == head and cfg.loss.heatmap == loss and cfg.model.heatmap_stride == 4


def test_old_graph_checkpoint_still_loads(tiny_weights, tmp_path):
    """A graph checkpoint whose JSON predates heatmap_stride / readout loads unchanged."""
    st, js = stem_paths(tiny_weights)
    meta = json.loads(js.read_text())
    for k in ("heatmap_stride", "readout"):
        meta["model"].pop(k, None)
    (tmp_path / "old.json").write_text(json.dumps(meta))
    (tmp_path / "old.safetensors").write_bytes(st.read_bytes())
    model, _ = load_model(tmp_path / "old.safetensors")
    ref, _ = load_model(tiny_weights)
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x)["coords"], ref(x)["coords"])
    assert "heatmaps" not in model(x)


# ------------------------------------------------------------------------------------------- models
@pytest.mark.parametrize("head", ["heatmap", "hybrid"])
@pytest.mark.parametrize("ro", ["soft_argmax", "get_max", "get_bc"])
def test_heads_output_shapes(head, ro):
    torch.manual_seed(0)
    model = _model(head, readout=ro).eval()
    with torch.inference_mode():
        out = model(torch.rand(2, 3, 64, 64))
    n, e = NUM_LANDMARKS, len(CURVES)
    assert out["coords"].shape == (2, n, 2) and out["adjacency"].shape == (2, n, n)
    assert out["cov"].shape == (2, n, 2, 2)
    assert out["heatmaps"].shape == (2, n, 16, 16) and out["point_heatmaps"].shape == (2, n, 16, 16)
    assert out["edge_heatmaps"].shape == (2, e, 16, 16)
    assert torch.isfinite(out["coords"]).all()
    assert torch.allclose(out["adjacency"].sum(-1), torch.ones(2, n), atol=1e-5)
    assert (torch.linalg.eigvalsh(out["cov"]) > 0).all()


def test_pure_heatmap_head_uses_uniform_binary_adjacency_and_readout():
    torch.manual_seed(0)
    model = _model("heatmap", readout="get_bc", uncertainty=False).eval()
    with torch.inference_mode():
        out = model(torch.rand(1, 3, 64, 64))
    m = model.neighbours
    assert torch.allclose(out["adjacency"][0], m / m.sum(-1, keepdim=True))
    assert "cov" not in out
    assert torch.allclose(out["coords"], heatmap_to_crop(get_bc(out["heatmaps"]), 64, 4), atol=1e-6)


def test_heatmap_stride_8_and_binary_hybrid_adjacency():
    model = _model("hybrid", heatmap_stride=8, adjacency="binary").eval()
    with torch.inference_mode():
        out = model(torch.rand(1, 3, 64, 64))
    assert out["heatmaps"].shape[-2:] == (8, 8) and out["coords"].shape == (1, 68, 2)
    m = model.neighbours
    assert torch.allclose(out["adjacency"][0], m / m.sum(-1, keepdim=True))


def test_hybrid_starts_at_the_readout_and_gets_coordinate_gradients():
    torch.manual_seed(0)
    model = _model("hybrid", readout="get_max").eval()
    out = model(torch.rand(1, 3, 64, 64))
    base = heatmap_to_crop(get_max(out["heatmaps"]), 64, 4)
    assert (out["coords"] - base).abs().max() < 0.05  # graph offset starts near zero
    out["coords"].sum().backward()  # get_max has no gradient; the graph offset does
    assert model.stages[0].head.out.weight.grad.abs().sum() > 0


def test_compute_loss_adds_heatmap_terms_only_for_heatmap_models():
    shapes = synthetic_shapes()
    target = torch.as_tensor(shapes[:2])
    x = torch.rand(2, 3, 64, 64)
    graph = build_model(ModelConfig(**TINY_CONFIG), neighbourhood(shapes, 3), shapes.mean(0))
    _, parts = compute_loss(TrainConfig(model=graph.cfg), graph, graph(x), target)
    assert "hm" not in parts and "aam" not in parts
    for kind in ("awing", "l2", "wasserstein"):
        model = _model("heatmap")
        cfg = TrainConfig(model=model.cfg, loss=LossConfig(coord="smooth_adl1", heatmap=kind))
        total, parts = compute_loss(cfg, model, model(x), target)
        assert {"coord", "hm", "aam"} <= set(parts) and torch.isfinite(total)
        direct = heatmap_loss_parts(cfg.loss, model.cfg, model(x), target)
        assert direct.keys() == {"hm", "aam"}


def _dot_images(shapes: np.ndarray, size: int) -> torch.Tensor:
    """Grey images with a bright dot at every landmark and the curves drawn: learnable in a few steps."""
    imgs = []
    for s in shapes:
        img = np.full((size, size, 3), 60, np.uint8)
        p = s * size
        for a, b in curve_edges():
            cv2.line(img, tuple(int(v) for v in p[a]), tuple(int(v) for v in p[b]), (120, 90, 70), 1)
        for q in p:
            cv2.circle(img, (int(round(q[0])), int(round(q[1]))), 1, (255, 220, 40), -1)
        imgs.append(img)
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255


@pytest.mark.parametrize("head,kind", [("heatmap", "awing"), ("heatmap", "wasserstein"), ("hybrid", "awing")])
def test_tiny_model_trains_with_finite_decreasing_loss(head, kind):
    from core.train import set_train_mode

    torch.manual_seed(0)
    shapes = synthetic_shapes(8, seed=3)
    model = _model(head, shapes=synthetic_shapes(), readout="get_bc" if kind == "wasserstein" else "soft_argmax")
    cfg = TrainConfig(model=model.cfg, loss=LossConfig(coord="smooth_adl1", heatmap=kind,
                                                       heatmap_sigma=3.0 if kind == "wasserstein" else 1.5))
    x, y = _dot_images(shapes, 64), torch.as_tensor(shapes)
    set_train_mode(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for _ in range(8):
        loss, _ = compute_loss(cfg, model, model(x), y)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-2:]) < 0.9 * np.mean(losses[:2]), losses


def test_heatmap_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = _model("hybrid", readout="get_bc").eval()
    save_weights(tmp_path / "hyb.safetensors", model, {"train_data": "synthetic"})
    loaded, meta = load_model(tmp_path / "hyb.safetensors")
    assert meta["model"]["head"] == "hybrid" and loaded.cfg.readout == "get_bc"
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        a, b = model(x), loaded(x)
    for k in ("coords", "adjacency", "cov", "heatmaps"):
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_onnx_export_hybrid_dynamic_batch(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from core.export_onnx import export

    torch.manual_seed(0)
    model = _model("hybrid").eval()
    names = ["coords", "adjacency", "cov"]
    try:
        path = export(model, tmp_path / "hybrid.onnx")  # the project's exporter (dynamic batch axis)
    except (ImportError, ModuleNotFoundError) as e:  # exporter dependencies, not this model
        pytest.skip(f"torch.onnx.export unavailable: {e}")
    onnx.checker.check_model(onnx.load(str(path)))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b in (1, 3):
        x = torch.rand(b, 3, 64, 64)
        with torch.inference_mode():
            ref = model(x)
        got = dict(zip(names, sess.run(names, {"image": x.numpy()})))
        for k in names:
            assert got[k].shape == tuple(ref[k].shape)
            assert np.abs(got[k] - ref[k].numpy()).max() < 1e-4, k


def test_onnx_export_get_max_readout(tmp_path):
    """GET_MAX (arg-max + quarter offset) exports too; checked on peaked maps, since on an untrained
    model's near-flat maps a 1e-7 difference between runtimes can move the arg-max."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import warnings

    class ReadOut(torch.nn.Module):
        def forward(self, z):
            return get_max(z)

    path = tmp_path / "get_max.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ReadOut(), (torch.randn(2, 3, 16, 16),), str(path), dynamo=False, opset_version=17,
                          input_names=["z"], output_names=["xy"], dynamic_axes={"z": {0: "b"}, "xy": {0: "b"}})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(0)
    for b in (1, 4):
        z = torch.randn(b, 3, 16, 16, generator=g)
        assert np.array_equal(sess.run(None, {"z": z.numpy()})[0], get_max(z).numpy())


# -------------------------------------------------------------------- same commands as the graph head
def test_cli_train_evaluate_and_resume_old_format(tmp_path):
    """`core.train` trains a tiny hybrid model for one epoch, `core.evaluate` scores its checkpoint, and
    `--resume` accepts a checkpoint whose model JSON predates heatmap_stride / readout."""
    import yaml

    from core.evaluate import main as evaluate_main
    from core.train import main as train_main
    from synth_faces import write_split

    root = tmp_path / "faces68"
    write_split(root, n=8, seed=0)
    write_split(root, n=3, split="test", seed=1)
    cfg = {"model": {**TINY_CONFIG, "head": "hybrid"},  # heatmap_stride / readout at their defaults
           "loss": {"coord": "smooth_adl1", "heatmap": "awing", "heatmap_sigma": 1.0},
           "data": {"root": str(root), "val_fraction": 0.25}, "epochs": 1, "batch_size": 3, "workers": 0,
           "threads": 1, "warmup_epochs": 1}
    cfg_path = tmp_path / "hybrid.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert train_main(["--config", str(cfg_path), "--out", str(out)]) == 0
    res_path = tmp_path / "res.json"
    assert evaluate_main(["--data", str(root), "--split", "test", "--weights", str(out / "best.safetensors"),
                          "--json", str(res_path)]) == 0
    res = json.loads(res_path.read_text())
    assert res["model"]["head"] == "hybrid" and res["n"] == 3 and np.isfinite(res["nme"])
    assert "calibration" in res  # the hybrid head's cov reaches core.evaluate
    # another read-out of the same checkpoint, without retraining: other coordinates, recorded in the JSON
    assert evaluate_main(["--data", str(root), "--split", "test", "--weights", str(out / "best.safetensors"),
                          "--json", str(res_path), "--readout", "get_max"]) == 0
    res_max = json.loads(res_path.read_text())
    assert res_max["model"]["readout"] == "get_max" and res_max["nme"] != res["nme"]
    meta = json.loads((out / "last.json").read_text())
    for k in ("heatmap_stride", "readout"):
        meta["model"].pop(k)
    (out / "last.json").write_text(json.dumps(meta))
    assert train_main(["--config", str(cfg_path), "--out", str(out), "--resume"]) == 0  # old JSON = defaults


# ------------------------------------------------------------------------ flagship: local nodes, stages
def test_ring_sampler_reads_the_map_at_the_landmark():
    """A map whose value is its own x coordinate (crop units) reads back each estimate's x at the ring
    centre, and x + r * stride / S on the ring's first point, at any stride."""
    from core.models.refine import SAMPLE_RADII, LocalSampler

    size = 64
    for stride in (4, 8):
        sampler = LocalSampler(8, stride, size)
        w = size // stride
        xs = (torch.arange(w) * stride + (stride - 1) / 2) / size  # cell centres in crop units
        g = xs.view(1, 1, 1, w).expand(1, 1, w, w).contiguous()
        pts = torch.tensor([[[0.3, 0.5], [0.62, 0.41]]])
        out = sampler(g, pts).view(1, 2, -1)  # one channel: (B, N, K)
        assert torch.allclose(out[..., 0], pts[..., 0], atol=1e-5)
        assert torch.allclose(out[..., 1], pts[..., 0] + SAMPLE_RADII[0] * stride / size, atol=1e-5)


def test_local_nodes_ignore_an_occluder_far_from_the_landmark():
    """Local node features: changing the image far from landmark i leaves node i's sampled features
    unchanged (away from the decoder's receptive field); whole-crop nodes all change."""
    from core.models.refine import LocalSampler, WholeCropNodes

    torch.manual_seed(0)
    f = torch.rand(1, 32, 16, 16)
    sampler, whole = LocalSampler(32, 4, 64).eval(), WholeCropNodes(32, 2, 4).eval()
    pts = torch.tensor([[[0.15, 0.15], [0.85, 0.85]]])
    g = sampler.reduced(f)
    f2 = f.clone()
    f2[..., 10:, 10:] = torch.rand(1, 32, 6, 6)  # occluder over the second landmark's corner
    with torch.no_grad():
        a, b = sampler(g, pts), sampler(sampler.reduced(f2), pts)
        assert torch.equal(a[0, 0], b[0, 0]) and not torch.equal(a[0, 1], b[0, 1])
        wa, wb = whole(f), whole(f2)
        assert not torch.equal(wa[0, 0], wb[0, 0]) and not torch.equal(wa[0, 1], wb[0, 1])


@pytest.mark.parametrize("nodes,stages,stage_head", [("local", 1, "graph"), ("whole", 1, "graph"),
                                                     ("local", 2, "fc")])
def test_hybrid_refinement_stages_train_and_export(tmp_path, nodes, stages, stage_head):
    """Every graph stage before the last is supervised (stage_coords in training only), the exported
    ONNX model (grid_sample at the refined positions) matches torch, and the FC baseline reports the
    fixed neighbourhood as its adjacency."""
    import onnxruntime as ort

    from core.export_onnx import export

    shapes = synthetic_shapes()
    torch.manual_seed(0)
    model = _model("hybrid", node_features=nodes, refine_stages=stages, stage_head=stage_head)
    assert len(model.stages) == stages + 1
    x, target = torch.rand(2, 3, 64, 64), torch.as_tensor(shapes[:2])
    model.train()
    out = model(x)
    assert len(out["stage_coords"]) == stages
    cfg = TrainConfig(model=model.cfg, loss=LossConfig(coord="smooth_adl1", heatmap="wasserstein"))
    total, parts = compute_loss(cfg, model, out, target)
    assert "stages" in parts and torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None for p in model.stages[0].parameters() if p.requires_grad)
    model.eval()
    with torch.inference_mode():
        ref = model(x)
    assert "stage_coords" not in ref
    if stage_head == "fc":
        m = model.neighbours
        assert torch.allclose(ref["adjacency"][0], m / m.sum(-1, keepdim=True))
    path = export(model, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    coords = sess.run(["coords"], {"image": x.numpy()})[0]
    assert np.abs(coords - ref["coords"].numpy()).max() < 1e-3


def test_stage_options_belong_to_the_hybrid_head():
    with pytest.raises(ConfigError, match="refine_stages"):
        ModelConfig(head="graph", refine_stages=1).validate()
    with pytest.raises(ConfigError, match="stage_head"):
        ModelConfig(head="heatmap", stage_head="fc").validate()
    assert not ModelConfig(head="hybrid", stage_head="fc").dynamic_adjacency
    with pytest.raises(ConfigError, match="exclusive"):
        from_dict(TrainConfig, {"init_weights": "a", "init_features": "b"})


def test_fast_head_speed_times_every_head_variant(tmp_path, capsys):
    """benchmarks/fast_head_speed.py on a tiny hybrid model with its int8 export beside it: one row per
    model (the shipped int8 file, each head variant built, exported and quantised, dlib if installed),
    each with a positive time and its ratio to the first row."""
    import sys
    from pathlib import Path

    import numpy as np

    from core.checkpoint import save_weights
    from core.export_onnx import export, quantize_int8, quantized_scope

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from fast_head_speed import VARIANTS, main as speed_main

    torch.manual_seed(0)
    model = _model("hybrid", readout="get_bc").eval()
    weights = tmp_path / "tiny_hybrid.safetensors"
    save_weights(weights, model, {"train_data": "synthetic"})
    crops = np.random.default_rng(0).random((4, 3, 64, 64), dtype=np.float32)
    quantize_int8(export(model, tmp_path / "tiny_hybrid.onnx"), tmp_path / "tiny_hybrid.int8.onnx", crops,
                  quantized_scope("hybrid"))
    assert speed_main(["--weights", str(weights), "--rounds", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if " ms " in line]
    assert [r.split("  ")[0].strip() for r in rows][:1 + len(VARIANTS)] == ["shipped", *VARIANTS]
    assert all(float(r.split(" ms")[0].split()[-1]) > 0 for r in rows) and "x1.00 shipped" in rows[0]
