"""Drawing on synthetic data (core.overlays, core.occluders) and the app's plots (app.plots): pure
numpy/cv2/plotly, no model, no server."""
from __future__ import annotations

import numpy as np
import pytest

from app import plots
from core import occluders
from core import overlays as ov
from core.images import fit_within


def rot(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])



def test_ellipse_axes_of_known_covariance():
    r = rot(30.0)
    cov = r @ np.diag([9.0, 1.0]) @ r.T  # std 3 along 30 deg, 1 across
    axes, angle = ov.ellipse_axes(cov, 1.0)
    np.testing.assert_allclose(axes, [3.0, 1.0], atol=1e-9)
    assert angle == pytest.approx(30.0)
    axes2, _ = ov.ellipse_axes(np.stack([cov, np.diag([4.0, 16.0])]), 2.0)  # k-sigma = k sqrt(eig)
    np.testing.assert_allclose(axes2, [[6.0, 2.0], [8.0, 4.0]], atol=1e-9)
    _, ang = ov.ellipse_axes(np.diag([4.0, 16.0]))
    assert abs(ang) == pytest.approx(90.0)
    axes3, _ = ov.ellipse_axes(np.array([[1.0, 1.0], [1.0, 1.0 - 1e-12]]))  # rounding: no NaN
    assert np.isfinite(axes3).all()
    with pytest.raises(ValueError):
        ov.ellipse_axes(np.zeros((3, 3)))


def test_ellipses_drawn_with_k_sigma_axes():
    img = np.zeros((200, 200, 3), np.uint8)
    pts = np.array([[100.0, 100.0]])
    r = rot(90.0)
    cov = (r @ np.diag([400.0, 100.0]) @ r.T)[None]  # major axis (std 20) vertical, minor (10) horizontal
    out = ov.draw_ellipses(img, pts, cov, sigmas=(1.0, 2.0), colors=((255, 0, 0), (0, 0, 255)))
    assert img.sum() == 0  # input untouched
    for channel, (ax_major, ax_minor) in ((0, (20, 10)), (2, (40, 20))):
        ys, xs = np.nonzero(out[:, :, channel] > 128)
        assert abs((ys.max() - ys.min()) / 2 - ax_major) <= 1.5
        assert abs((xs.max() - xs.min()) / 2 - ax_minor) <= 1.5
        assert abs(ys.mean() - 100) < 1.5 and abs(xs.mean() - 100) < 1.5
    with pytest.raises(ValueError):
        ov.draw_ellipses(img, pts, np.zeros((2, 2, 2)))


def test_graph_edges_are_undirected_and_drawn_by_weight():
    nb = np.eye(4)
    nb[0, 1] = nb[1, 0] = nb[2, 3] = 1  # 0-1 both ways, 2->3 one way only
    edges = ov.graph_edges(nb)
    assert edges.tolist() == [[0, 1], [2, 3]]
    adj = np.zeros((4, 4))
    adj[0, 1], adj[1, 0], adj[2, 3] = 0.9, 0.5, 0.1
    np.testing.assert_allclose(ov.edge_weights(edges, adj), [0.9, 0.1])
    pts = np.array([[20.0, 50.0], [180.0, 50.0], [20.0, 150.0], [180.0, 150.0]])
    img = np.zeros((200, 200, 3), np.uint8)
    out = ov.draw_graph(img, pts, nb, adj, max_thickness=7)
    strong = (out[40:61, 40:160].max(-1) > 0).sum(0)  # column-wise line thickness of edge 0-1
    weak = (out[140:161, 40:160].max(-1) > 0).sum(0)
    assert strong.min() > 0 and weak.min() > 0  # both edges drawn end to end
    assert strong.mean() > weak.mean() + 2  # thicker for the stronger edge
    assert not np.array_equal(out[50, 100], out[150, 100])  # and another colour
    assert out[100, 100].sum() == 0  # nothing between the two edges
    plain = ov.draw_graph(img, pts, nb, None)  # no adjacency: all edges alike
    assert (plain[50, 40:160].max(-1) > 0).all() and (plain[150, 40:160].max(-1) > 0).all()


def test_points_numbers_box_and_text():
    img = np.full((120, 160, 3), 50, np.uint8)
    pts = np.array([[30.0, 40.0], [100.0, 80.0], [np.nan, np.nan]])
    out = ov.draw_points(img, pts, color=(0, 255, 0), radius=3)
    assert tuple(out[40, 30]) == (0, 255, 0) and tuple(out[80, 100]) == (0, 255, 0)
    numbered = ov.draw_points(img, pts, numbers=True)
    assert (numbered != out).any()
    boxed = ov.draw_box(img, (10, 10, 60, 70), color=(255, 0, 0), label="#0")
    assert boxed[40, 10, 0] > 200 and boxed[40, 10, 1] < 30  # anti-aliased edge
    text = ov.draw_text_box(img, ["12.5 FPS  8.0 ms", "CPU · x"], corner="top-left")
    assert (text[:30, :100] == 20).all(-1).sum() > 200  # 60 % black box behind the text
    assert (text[2:30, 2:100] > 200).any()  # white text
    assert np.array_equal(ov.draw_text_box(img, []), img)
    with pytest.raises(ValueError):
        ov.draw_points(np.zeros((10, 10), np.uint8), pts)


def test_draw_face_options_and_scaling():
    rng = np.random.default_rng(0)
    pts = rng.uniform(40, 160, (68, 2))
    face = {"box": np.array([30.0, 30.0, 170.0, 170.0]), "score": 0.9, "landmarks": pts,
            "covariance": np.tile(np.eye(2) * 4.0, (68, 1, 1)), "adjacency": np.eye(68)}
    img = np.zeros((200, 200, 3), np.uint8)
    nb = np.eye(68)
    nb[np.arange(67), np.arange(1, 68)] = 1
    none = ov.draw_face(img, face, nb, ov.OverlayOptions(points=False, box=False))
    assert none.sum() == 0
    everything = ov.OverlayOptions.from_names(["points", "graph", "ellipses", "box", "numbers", "curves"])
    full = ov.draw_face(img, face, nb, everything)
    assert full.sum() > ov.draw_face(img, face, nb, ov.OverlayOptions()).sum()
    half = ov.scale_face(face, 0.5)
    np.testing.assert_allclose(half["landmarks"], pts * 0.5)
    np.testing.assert_allclose(half["covariance"], face["covariance"] * 0.25)
    small, s = fit_within(np.zeros((400, 1000, 3), np.uint8), 500)
    assert small.shape == (200, 500, 3) and s == 0.5
    with pytest.raises(ValueError):
        ov.OverlayOptions.from_names(["points", "sparkles"])


def test_occluders():
    box = (100, 100, 200, 300)  # 100 x 200
    m = occluders.occluder_mask((400, 400), box, "box", (0.5, 0.5, 0.5, 0.25))
    assert abs(int(m.sum()) - 50 * 50) < 200 and m[200, 150] and not m[120, 150]
    e = occluders.occluder_mask((400, 400), box, "ellipse", (0.5, 0.5, 0.5, 0.25))
    assert abs(int(e.sum()) - np.pi * 25 * 25) < 150
    r1 = occluders.random_occluders((400, 400), box, seed=3, count=3)
    assert np.array_equal(r1, occluders.random_occluders((400, 400), box, seed=3, count=3))
    assert not np.array_equal(r1, occluders.random_occluders((400, 400), box, seed=4, count=3))
    img = np.full((400, 400, 3), 200, np.uint8)
    assert (occluders.apply_occlusion(img, m, "black")[m] == 0).all()
    assert (occluders.apply_occlusion(img, m, "gray")[~m] == 200).all()
    with pytest.raises(ValueError):
        occluders.occluder_mask((10, 10), box, "star")


# ----------------------------------------------------------------------------- plots


def test_plots():
    adj = np.eye(68) * 0.5
    adj[0, 1] = 0.5
    fig = plots.adjacency_heatmap(adj, np.eye(68) + np.eye(68, k=1))
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (68, 68) and np.isnan(z[5, 40]) and z[0, 1] == 0.5
    unc = plots.uncertainty_bars(np.tile(np.diag([9.0, 4.0]), (68, 1, 1)), iod=60.0)
    np.testing.assert_allclose(unc.data[0].y, 3.0)
    np.testing.assert_allclose(unc.data[1].y, 2.0)
    assert "no uncertainty" in plots.uncertainty_bars(None).layout.annotations[0].text
    ced = plots.ced_figure([{"name": "a", "nme_per_face": [0.02, 0.04, 0.2]}, {"name": "b", "nme": 0.05}])
    assert len(ced.data) == 1 and ced.data[0].y[-1] == pytest.approx(2 / 3)
    row = plots.result_summary({"name": "a", "nme_per_face": [0.02, 0.04, 0.2]})
    assert row["NME (%)"] == pytest.approx(8.667, abs=1e-3) and row["FR@0.10 (%)"] == pytest.approx(33.33, abs=0.01)
    assert row["faces"] == 3
