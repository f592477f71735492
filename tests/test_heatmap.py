"""Heatmap family: target rendering, read-outs, heatmap losses (Adaptive Wing, L2, 2D Wasserstein),
the heatmap and hybrid heads, their training step, checkpoints and ONNX export. Tiny and CPU-only."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from core.checkpoint import load_model, save_weights, stem_paths
from core.config import ConfigError, LossConfig, ModelConfig, TrainConfig, from_dict, load_config, to_dict
from core.graph import neighbourhood
from core.heatmap_losses import (SINKHORN_EPS, _kernel, _softmin, adaptive_wing_loss, heatmap_l2_loss,
                                 heatmap_loss_parts, sinkhorn_divergence, wasserstein_loss)
from core.heatmaps import (crop_to_heatmap, curve_segments, edge_heatmaps, gaussian_log_heatmaps, get_bc, get_max,
                           heatmap_to_crop, landmark_curve_index, point_heatmaps, readout, soft_argmax)
from core.landmarks import CLOSED_CURVES, CURVES, NUM_LANDMARKS, curve_edges
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


# ------------------------------------------------------------------------------------------- frames
def test_crop_heatmap_frames_roundtrip_and_cell_centres():
    c = torch.rand(3, 68, 2)
    assert torch.allclose(heatmap_to_crop(crop_to_heatmap(c, 192, 4), 192, 4), c, atol=1e-6)
    # heatmap cell j is centred on input pixel 4 j + 1.5 (strided conv / align_corners=False)
    u = torch.tensor([[[4 * 7 + 1.5, 4 * 3 + 1.5]]])
    assert torch.allclose(crop_to_heatmap(u / 192, 192, 4), torch.tensor([[[7.0, 3.0]]]))


# ---------------------------------------------------------------------------------------- rendering
def test_point_heatmaps_peak_at_landmark():
    pts = torch.tensor([[[5.0, 9.0], [12.0, 3.0]]])
    hm = point_heatmaps(pts, 16, 20, 1.5)
    assert hm.shape == (1, 2, 16, 20)
    assert hm[0, 0, 9, 5] == pytest.approx(1.0) and hm[0, 1, 3, 12] == pytest.approx(1.0)
    assert hm[0, 0, 9, 7] == pytest.approx(math.exp(-4 / (2 * 1.5 ** 2)), rel=1e-5)


def test_curve_segments_follow_landmark_curves():
    edges, owner = curve_segments()
    assert [tuple(e) for e in edges] == curve_edges()
    assert len(set(owner.tolist())) == len(CURVES)
    idx = landmark_curve_index()
    assert (idx >= 0).all() and idx[0] == CURVE_NAMES.index("jaw") and idx[67] == CURVE_NAMES.index("inner_lip")


def _far_points(n=NUM_LANDMARKS):
    return torch.full((1, n, 2), -100.0)


def test_edge_heatmap_is_distance_to_polyline():
    sigma = 1.5
    pts = _far_points()
    brow = CURVES["right_brow"]  # open: a straight run at y = 5 from x = 2 to x = 10
    pts[0, brow] = torch.tensor([[2.0, 5.0], [4.0, 5.0], [6.0, 5.0], [8.0, 5.0], [10.0, 5.0]])
    e = edge_heatmaps(pts, 16, 16, sigma)[0, CURVE_NAMES.index("right_brow")]
    assert torch.allclose(e[5, 2:11], torch.ones(9))  # on the segments: peak 1 everywhere
    assert e[7, 6] == pytest.approx(math.exp(-4 / (2 * sigma ** 2)), rel=1e-5)  # 2 px off the line
    assert e[5, 13] == pytest.approx(math.exp(-9 / (2 * sigma ** 2)), rel=1e-5)  # 3 px beyond the open end


def test_edge_heatmap_closes_closed_curves_only():
    pts = _far_points()
    eye = CURVES["right_eye"]  # closed: its last-to-first segment is drawn
    pts[0, eye] = torch.tensor([[2.0, 2.0], [6.0, 2.0], [10.0, 2.0], [10.0, 10.0], [6.0, 10.0], [2.0, 10.0]])
    jaw = CURVES["jaw"]  # open: a U whose ends are not joined
    pts[0, jaw] = torch.stack([torch.full((17,), 20.0), torch.linspace(2, 30, 17)], 1)
    pts[0, jaw[-1]] = torch.tensor([30.0, 2.0])  # jump back up: segment 15-16 goes right, no closing 16-0
    maps = edge_heatmaps(pts, 32, 32, 1.0)[0]
    eye_map, jaw_map = maps[CURVE_NAMES.index("right_eye")], maps[CURVE_NAMES.index("jaw")]
    assert "right_eye" in CLOSED_CURVES and "jaw" not in CLOSED_CURVES
    assert eye_map[6, 2] == pytest.approx(1.0)  # on the closing segment (2,10) -> (2,2)
    assert eye_map[6, 6] < 1e-3  # inside the eye, 4 px from every side
    assert jaw_map[2, 25] < 1e-3  # where a closing jaw segment (30,2) -> (20,2) would run


def test_edge_heatmaps_peak_on_synthetic_face_curves():
    h = w = 48
    pts = torch.as_tensor(synthetic_shapes(2) * (w - 1))
    maps = edge_heatmaps(pts, h, w, 1.5)
    assert maps.shape == (2, len(CURVES), h, w) and float(maps.max()) <= 1.0 + 1e-6
    for c, (name, idx) in enumerate(CURVES.items()):
        # every landmark of the curve sits on it: the map there (nearest cell, <= 0.71 px) is high
        p = pts[0, idx].round().long()
        assert (maps[0, c, p[:, 1], p[:, 0]] > math.exp(-0.5 / (2 * 1.5 ** 2)) - 1e-4).all(), name
        # and the map's maximum cell is within a pixel of the curve's polyline
        m = int(maps[0, c].flatten().argmax())
        cell = torch.tensor([m % w, m // w], dtype=torch.float32)
        seg_pts = torch.stack([torch.lerp(pts[0, a], pts[0, b], t) for a, b in curve_edges() if a in idx
                               for t in torch.linspace(0, 1, 50)])
        assert float((seg_pts - cell).norm(dim=-1).min()) < 1.0, name


# ---------------------------------------------------------------------------------------- read-outs
@pytest.mark.parametrize("xy", [(10.3, 7.6), (5.5, 12.25), (12.9, 5.1)])
def test_get_bc_recovers_subpixel_peak(xy):
    # logits = log-Gaussian -> softmax = normalised Gaussian; >= 3 sigma from the border (a barycentre
    # of a map cut by the border is pulled inwards)
    z = _log_gauss(*xy, 18, 20)[None]
    assert torch.allclose(get_bc(z)[0, 0], torch.tensor(xy), atol=1e-3)


@pytest.mark.parametrize("xy", [(10.3, 7.6), (5.5, 12.25), (14.9, 3.1), (7.0, 8.0), (9.74, 4.45)])
def test_get_max_quarter_offset_within_quarter_pixel(xy):
    z = torch.sigmoid(_log_gauss(*xy, 18, 20)[None])  # any monotone map of the peak
    p = get_max(z)[0, 0]
    assert (p - torch.tensor(xy)).abs().max() <= 0.25 + 1e-6
    assert not p.requires_grad


def test_get_max_values():
    z = _log_gauss(10.3, 7.8, 18, 20)[None]
    assert torch.allclose(get_max(z)[0, 0], torch.tensor([10.25, 7.75]))
    z = _log_gauss(0.0, 5.0, 18, 20)[None]  # border column: no offset across the border
    assert torch.allclose(get_max(z)[0, 0], torch.tensor([0.0, 5.0]))


@pytest.mark.parametrize("xy", [(10.3, 7.6), (6.8, 9.2)])
def test_soft_argmax_recovers_subpixel_peak(xy):
    g = _log_gauss(*xy, 18, 20).exp().clamp(1e-7, 1 - 1e-7)
    z = torch.log(g / (1 - g))[None]  # sigmoid(z) = the Gaussian
    assert torch.allclose(soft_argmax(z)[0, 0], torch.tensor(xy), atol=1e-3)


def test_differentiable_readouts_have_gradients():
    z = torch.randn(2, 3, 8, 10, requires_grad=True)
    for name in ("soft_argmax", "get_bc"):
        (g,) = torch.autograd.grad(readout(z, name).sum(), z)
        assert torch.isfinite(g).all() and g.abs().sum() > 0
    with pytest.raises(ValueError):
        readout(z, "argmax")


# ------------------------------------------------------------------------------------------- losses
def test_awing_and_l2_zero_at_target_and_awing_continuous():
    t = point_heatmaps(torch.tensor([[[4.0, 5.0]]]), 10, 10, 1.5)
    assert float(adaptive_wing_loss(t, t)) == pytest.approx(0.0, abs=1e-7)
    assert float(heatmap_l2_loss(t, t)) == 0.0
    y = torch.full((1, 1, 1, 1), 0.3)
    lo = adaptive_wing_loss(y + 0.5 - 1e-5, y, map_weight=0)
    hi = adaptive_wing_loss(y + 0.5 + 1e-5, y, map_weight=0)
    assert float(hi) == pytest.approx(float(lo), abs=1e-3)  # continuous at |d| = theta
    pred = torch.full_like(t, 0.2, requires_grad=True)
    (g,) = torch.autograd.grad(adaptive_wing_loss(pred, t), pred)
    assert torch.isfinite(g).all()


def test_softmin_is_the_dense_log_sum_exp():
    h, w, eps = 5, 7, 0.8
    torch.manual_seed(0)
    log_w = torch.log_softmax(torch.randn(2, h * w, dtype=torch.float64), 1).view(2, h, w)
    pot = torch.randn(2, h, w, dtype=torch.float64)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    cost = ((ys.flatten()[:, None] - ys.flatten()[None]).abs() + (xs.flatten()[:, None] - xs.flatten()[None]).abs())
    dense = -eps * torch.logsumexp((log_w + pot / eps).flatten(1)[:, :, None] - cost[None].double() / eps, 1)
    sep = _softmin(eps, log_w, pot, _kernel(w, eps, log_w), _kernel(h, eps, log_w))
    assert torch.allclose(sep.flatten(1), dense, atol=1e-9)


def test_wasserstein_zero_for_identical_maps():
    torch.manual_seed(0)
    z = torch.randn(3, 2, 16, 16) * 2
    assert float(wasserstein_loss(z, z).abs()) < 1e-4
    g = _log_gauss(6.3, 9.1, 16, 16, 3.0)
    assert float(sinkhorn_divergence(g, g).abs()) < 1e-4


def test_wasserstein_grows_linearly_where_l2_saturates():
    h, w, sigma = 32, 40, 1.5
    a = _log_gauss(5.0, 15.0, h, w, sigma)
    shifts = (2.0, 8.0, 16.0, 30.0)
    ws = [float(sinkhorn_divergence(a, _log_gauss(5.0 + s, 15.0, h, w, sigma))) for s in shifts]
    l2 = [float(heatmap_l2_loss(a.exp(), _log_gauss(5.0 + s, 15.0, h, w, sigma).exp())) for s in shifts]
    assert all(x < y for x, y in zip(ws, ws[1:]))  # W grows with the displacement ...
    slope = (ws[3] - ws[1]) / (shifts[3] - shifts[1])  # ... linearly (|dx| ground cost) once apart
    assert slope == pytest.approx(1.0, abs=0.05)
    assert ws[2] - ws[1] == pytest.approx(8.0, abs=0.4)
    assert abs(l2[3] / l2[2] - 1) < 1e-3 and abs(l2[2] / l2[1] - 1) < 1e-3  # ... where L2 is flat
    diag = float(sinkhorn_divergence(a, _log_gauss(13.0, 23.0, h, w, sigma)))  # ground cost |dx| + |dy|:
    assert diag == pytest.approx(2 * ws[1], abs=0.2)  # (8, 8) costs two (8, 0) moves


def test_wasserstein_gradient_finite_and_descends():
    h = w = 24
    z = torch.zeros(4, h, w, requires_grad=True)
    target = torch.stack([_log_gauss(3.0 + 5 * i, 18.0, h, w, 3.0)[0] for i in range(4)])
    loss = sinkhorn_divergence(z, target).sum()
    (g,) = torch.autograd.grad(loss, z)
    loss = loss.detach()
    assert torch.isfinite(g).all() and g.abs().max() > 0
    after = sinkhorn_divergence(z.detach() - 0.5 * g / g.abs().max(), target).sum()
    assert float(after) < float(loss)


def test_wasserstein_gradient_matches_finite_differences():
    torch.manual_seed(1)
    h, w = 7, 6
    z = (torch.randn(1, h, w, dtype=torch.float64) * 0.5).requires_grad_(True)
    t = _log_gauss(1.0, 5.0, h, w, 1.0).double()
    f = lambda v: sinkhorn_divergence(v, t, SINKHORN_EPS, 300)  # noqa: E731
    (g,) = torch.autograd.grad(f(z).sum(), z)
    d = torch.randn_like(z)
    fd = (f(z.detach() + 1e-4 * d) - f(z.detach() - 1e-4 * d)).sum() / 2e-4
    assert float((g * d).sum()) == pytest.approx(float(fd), rel=2e-2)


def test_wasserstein_large_grid_stays_finite():
    a, b = _log_gauss(2.0, 2.0, 96, 96), _log_gauss(93.0, 94.0, 96, 96)  # eps raised to avoid underflow
    v = sinkhorn_divergence(a, b)
    assert torch.isfinite(v).all() and float(v) > 150


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
