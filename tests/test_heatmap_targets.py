"""Heatmap targets and read-outs (crop <-> heatmap frames, point and edge heatmaps, GET_BC, GET_MAX,
soft-argmax) and the heatmap losses (Adaptive Wing, L2, 2D Wasserstein / Sinkhorn). Tiny and CPU-only;
the heads built on them: test_heatmap.py."""
from __future__ import annotations

import math

import pytest
import torch

from core.heatmap_losses import (SINKHORN_EPS, _kernel, _softmin, adaptive_wing_loss, heatmap_l2_loss,
                                 sinkhorn_divergence, wasserstein_loss)
from core.heatmaps import (crop_to_heatmap, curve_segments, edge_heatmaps, gaussian_log_heatmaps, get_bc, get_max,
                           heatmap_to_crop, landmark_curve_index, point_heatmaps, readout, soft_argmax)
from core.landmarks import CLOSED_CURVES, CURVES, NUM_LANDMARKS, curve_edges

from conftest import synthetic_shapes

torch.set_num_threads(1)
CURVE_NAMES = list(CURVES)


def _log_gauss(x, y, h, w, sigma=1.5):
    """(1, h, w) log-Gaussian centred at heatmap pixel (x, y)."""
    return gaussian_log_heatmaps(torch.tensor([[[x, y]]], dtype=torch.float32), h, w, sigma)[0]


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
