"""Coordinate losses: values and gradients at known points."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.graph import neighbourhood
from core.landmarks import CURVES
from core.losses import (COORD_LOSSES, adl_loss, gaussian_nll, l1_loss, laplacian_loss, smooth_adl1_loss,
                         soft_wing_loss, wing_loss)
from synth_faces import face_points

from conftest import synthetic_shapes


def _err(values) -> tuple[torch.Tensor, torch.Tensor]:
    """pred, target (1, K, 2) with pred - target = values on x and 0 on y."""
    v = torch.as_tensor(values, dtype=torch.float64)
    pred = torch.stack([v, torch.zeros_like(v)], -1)[None]
    return pred, torch.zeros_like(pred)


def _loss_of(fn, x: float, **kw) -> float:
    """Per-coordinate loss of an error x (the mean over (x, 0) is half of it, plus f(0))."""
    pred, target = _err([x])
    return 2 * float(fn(pred, target, **kw)) - 2 * _zero(fn, **kw)


def _zero(fn, **kw) -> float:
    pred, target = _err([0.0])
    return float(fn(pred, target, **kw))


# ---------------------------------------------------------------- Soft Wing
SW = dict(w1=2.0, w2=20.0, eps=0.5)


def test_soft_wing_zero_at_zero():
    assert _zero(soft_wing_loss, **SW) == 0.0


@pytest.mark.parametrize("x", [0.0, 0.1, 0.5, 1.0, 1.9, 1.999])
def test_soft_wing_is_abs_below_w1(x):
    for sign in (1, -1):
        assert _loss_of(soft_wing_loss, sign * x, **SW) == pytest.approx(x, abs=1e-12)


def test_soft_wing_continuous_at_w1():
    d = 1e-7
    left = _loss_of(soft_wing_loss, 2.0 - d, **SW)
    right = _loss_of(soft_wing_loss, 2.0 + d, **SW)
    at = _loss_of(soft_wing_loss, 2.0, **SW)
    assert left == pytest.approx(2.0, abs=1e-6)
    assert right == pytest.approx(left, abs=1e-5)
    assert at == pytest.approx(2.0, abs=1e-9)


def test_soft_wing_log_branch_above_w1():
    b = 2.0 - 20.0 * math.log(1 + 2.0 / 0.5)
    for x in (3.0, 10.0, 50.0):
        assert _loss_of(soft_wing_loss, x, **SW) == pytest.approx(20 * math.log(1 + x / 0.5) + b, rel=1e-12)
        assert _loss_of(soft_wing_loss, -x, **SW) == pytest.approx(20 * math.log(1 + x / 0.5) + b, rel=1e-12)


def test_soft_wing_gradient():
    # d/dx = sign(x) below w1, w2 / (eps + |x|) above; the per-element mean divides by 2K.
    pred, target = _err([1.0, -1.5, 3.0, -7.5])
    pred.requires_grad_(True)
    soft_wing_loss(pred, target, **SW).backward()
    g = pred.grad[0, :, 0] * 8
    assert torch.allclose(g, torch.tensor([1.0, -1.0, 20 / 3.5, -20 / 8.0], dtype=torch.float64))
    assert torch.all(pred.grad[0, :, 1] == 0)


# ---------------------------------------------------------------- Wing
def test_wing_known_points():
    w, eps = 10.0, 2.0
    c = w - w * math.log(1 + w / eps)
    assert _loss_of(wing_loss, 0.0, w=w, eps=eps) == 0.0
    assert _loss_of(wing_loss, 1.0, w=w, eps=eps) == pytest.approx(10 * math.log(1.5))
    assert _loss_of(wing_loss, -4.0, w=w, eps=eps) == pytest.approx(10 * math.log(3.0))
    assert _loss_of(wing_loss, 15.0, w=w, eps=eps) == pytest.approx(15.0 - c)
    # continuous at |x| = w
    assert _loss_of(wing_loss, w - 1e-7, w=w, eps=eps) == pytest.approx(_loss_of(wing_loss, w + 1e-7, w=w, eps=eps),
                                                                        abs=1e-5)


def test_wing_gradient():
    pred, target = _err([1.0, -12.0])
    pred.requires_grad_(True)
    wing_loss(pred, target, w=10.0, eps=2.0).backward()
    g = pred.grad[0, :, 0] * 4
    assert torch.allclose(g, torch.tensor([10 / 3.0, -1.0], dtype=torch.float64))


# ---------------------------------------------------------------- L1
def test_l1_value_and_gradient():
    pred = torch.tensor([[[1.0, -2.0], [0.5, 3.0]]], requires_grad=True)
    target = torch.zeros(1, 2, 2)
    loss = l1_loss(pred, target)
    assert loss.item() == pytest.approx((1 + 2 + 0.5 + 3) / 4)
    loss.backward()
    assert torch.allclose(pred.grad, torch.tensor([[[1.0, -1.0], [1.0, 1.0]]]) / 4)


def test_coord_loss_registry():
    assert COORD_LOSSES == {"l1": l1_loss, "wing": wing_loss, "soft_wing": soft_wing_loss}


# ---------------------------------------------------------------- ADL / Smooth-ADL1
def _target(batch=2) -> torch.Tensor:
    pts = np.stack([face_points(64, angle_deg=a) for a in np.linspace(-20, 20, batch)])
    return torch.tensor(pts, dtype=torch.float64)


def test_adl_with_lambda_one_is_l2():
    gt = _target()
    pred = gt + torch.randn(gt.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    l2 = ((pred - gt) ** 2).sum(-1).mean()
    assert float(adl_loss(pred, gt, lam=1.0)) == pytest.approx(float(l2), rel=1e-10)


def _straight_curve_batch():
    """Target with the nose bridge (27-30) on a vertical line; a unit error at point 28 along the
    normal (x) or the tangent (y) of that line, others exact."""
    gt = _target(1)
    gt[0, 27:31, 0] = 32.0
    gt[0, 27:31, 1] = torch.tensor([20.0, 25.0, 30.0, 35.0], dtype=torch.float64)
    normal, tangent = gt.clone(), gt.clone()
    normal[0, 28, 0] += 1.5
    tangent[0, 28, 1] += 1.5
    return gt, normal, tangent


def test_adl_normal_costs_lambda_times_tangent():
    gt, normal, tangent = _straight_curve_batch()
    ln, lt = float(adl_loss(normal, gt, lam=2.0)), float(adl_loss(tangent, gt, lam=2.0))
    assert lt == pytest.approx(1.5 ** 2 / 68)
    assert ln == pytest.approx(2 * lt)
    assert float(adl_loss(normal, gt, lam=1.0)) == pytest.approx(lt)


def test_smooth_adl1_normal_costs_lambda_times_tangent():
    gt, normal, tangent = _straight_curve_batch()
    ln, lt = float(smooth_adl1_loss(normal, gt, lam=2.0)), float(smooth_adl1_loss(tangent, gt, lam=2.0))
    assert lt == pytest.approx((1.5 - 0.5) / 68)  # smooth L1 (beta 1) of 1.5 = 1.0
    assert ln == pytest.approx(2 * lt)
    # quadratic zone: 0.5 e^2 / beta
    small = gt.clone()
    small[0, 28, 1] += 0.4
    assert float(smooth_adl1_loss(small, gt, lam=2.0)) == pytest.approx(0.5 * 0.4 ** 2 / 68)


def test_smooth_adl1_lambda_one_is_rotation_invariant_per_point_for_small_errors():
    # In the quadratic zone, lambda = 1 gives 0.5 |e|^2 whatever the direction of e.
    gt = _target(1)
    out = []
    for ang in (0.0, 0.7, 2.0):
        pred = gt.clone()
        pred[0, 5] += 0.3 * torch.tensor([math.cos(ang), math.sin(ang)], dtype=torch.float64)
        out.append(float(smooth_adl1_loss(pred, gt, lam=1.0)))
    assert out == pytest.approx([0.5 * 0.09 / 68] * 3)


def test_adl_gradients_finite_with_degenerate_curve():
    gt = _target(1).float()
    gt[0, CURVES["nose_bridge"]] = gt[0, 27].clone()  # all four points on top of each other: zero tangent
    pred = (gt + 0.5).requires_grad_(True)
    for fn in (adl_loss, smooth_adl1_loss):
        pred.grad = None
        loss = fn(pred, gt, 2.0)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()


# ---------------------------------------------------------------- Laplacian
@pytest.fixture(scope="module")
def neighbours():
    return torch.as_tensor(neighbourhood(synthetic_shapes(32), k=3))


def test_laplacian_zero_for_identical_shapes(neighbours):
    gt = _target().float()
    assert float(laplacian_loss(gt, gt.clone(), neighbours)) == 0.0


def test_laplacian_translation_invariant(neighbours):
    gt = _target().float()
    assert float(laplacian_loss(gt + torch.tensor([7.0, -3.0]), gt, neighbours)) == pytest.approx(0.0, abs=1e-5)
    # but the coordinate losses do see the translation
    assert float(l1_loss(gt + torch.tensor([7.0, -3.0]), gt)) == pytest.approx(5.0)


def test_laplacian_positive_for_non_rigid_change(neighbours):
    gt = _target().float()
    pred = gt.clone()
    pred[:, 30] += torch.tensor([2.0, 0.0])  # one point moves, its neighbours do not
    loss = laplacian_loss(pred, gt, neighbours)
    assert float(loss) > 0.01
    # exact value for a single moved point i: |d| at i, |d| / k at each j that has i as neighbour
    m = neighbours.clone()
    m.fill_diagonal_(0)
    has_i = m[:, 30] > 0
    expected = (2.0 + 2.0 / 3 * float(has_i.sum())) / 68
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_laplacian_gradient_finite(neighbours):
    gt = _target().float()
    pred = gt.clone().requires_grad_(True)  # zero error: the norm's gradient at 0 must not be NaN
    laplacian_loss(pred, gt, neighbours).backward()
    assert torch.isfinite(pred.grad).all()


# ---------------------------------------------------------------- Gaussian NLL
def test_gaussian_nll_value():
    pred = torch.zeros(1, 1, 2, dtype=torch.float64)
    target = torch.tensor([[[2.0, 0.0]]], dtype=torch.float64)
    cov = torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))[None, None]
    # 1/2 * 4/4 + 1/2 * log 4 (the 1e-6 jitter is negligible here)
    assert float(gaussian_nll(pred, target, cov)) == pytest.approx(0.5 + 0.5 * math.log(4.0), rel=1e-5)


def test_gaussian_nll_gradient_reaches_cov_not_coords():
    pred = torch.tensor([[[1.0, 2.0], [3.0, 1.0]]], requires_grad=True)
    target = torch.tensor([[[1.5, 2.5], [2.0, 1.0]]])
    params = torch.tensor([[[0.3, 0.1, -0.2], [0.0, -0.4, 0.2]]], requires_grad=True)
    from core.models import cholesky_to_cov
    cov = cholesky_to_cov(params)
    loss = gaussian_nll(pred, target, cov)
    loss.backward()
    assert pred.grad is None  # detached: the NLL cannot move the coordinates
    assert params.grad is not None and torch.isfinite(params.grad).all() and params.grad.abs().sum() > 0


def test_all_losses_have_finite_gradients_at_zero_error():
    gt = _target().float()
    for fn in (l1_loss, wing_loss, soft_wing_loss, adl_loss, smooth_adl1_loss):
        pred = gt.clone().requires_grad_(True)
        fn(pred, gt).backward()
        assert torch.isfinite(pred.grad).all(), fn.__name__
